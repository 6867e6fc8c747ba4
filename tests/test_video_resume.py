"""eval.video: a corrupt video counts as missing, each policy is written when it finishes, and bad
arguments are one line and status 2 before anything loads."""
import json
from types import SimpleNamespace

import pytest

import eval.video.__main__ as video
import eval.video.models as models
from eval.video import mlvu
from eval.video.answering import run_mlvu


def _item(path):
    return mlvu.MLVUItem(task="count", index=0, video="v.mp4", question="How many?", candidates=["1", "2"],
                         answer_text="1", answer="A", video_file=path, duration=None, record={})


def test_a_corrupt_video_counts_like_a_missing_one(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)  # a header, then nothing decodable
    logged = []
    rows = run_mlvu([_item(corrupt), _item(tmp_path / "absent.mp4")], lambda frames, item: "A", 4, log=logged.append)
    assert [r["missing"] for r in rows] == [True, True]
    assert mlvu.summarize(rows)["num_missing"] == 2
    assert "corrupt.mp4" in logged[0] and "cannot decode" in logged[0]


def test_a_missing_video_is_wrong_in_its_task_cell_and_in_m_avg(tmp_path):
    """MLVU: the table's task cell and M-Avg agree; the missing videos are named per task under it."""
    rows = run_mlvu([_item(tmp_path / "absent.mp4")], lambda frames, item: "A", 4)
    answered = mlvu.MLVUItem(task="order", index=0, video="w.mp4", question="Which first?", candidates=["a", "b"],
                             answer_text="a", answer="A", video_file=tmp_path / "w.mp4", duration=None, record={})
    rows.append(mlvu.score(answered, "A)"))
    summary = {**mlvu.summarize(rows), "cache_fraction": 1.0, "seconds_per_item": 0.0, "decode_frames_per_second": 0.0}
    table = video.format_table({"benchmark": "mlvu", "schedule": {"description": "schedule"}, "budget_mode": "fixed",
                                "chance": {"count": 0.5, "order": 0.5}, "policies": {"full": summary}})
    cells = next(line for line in table.splitlines() if line.startswith("full")).split()
    assert cells[1:4] == ["0.0", "100.0", "50.0"]  # count, order, M-Avg over both tasks
    assert table.splitlines()[-1] == "full: missing or unreadable videos, counted wrong: count 1 of 1"


def test_a_failing_policy_loses_none_of_the_earlier_ones(tmp_path, monkeypatch):
    calls = []

    def evaluate(chat, items, name, args, *rest):
        calls.append(name)
        if name == "h2o" and len(calls) == 2:
            raise RuntimeError("simulated failure in one policy")
        return {"m_avg": 0.5, "per_task": {}, "cache_fraction": 1.0 if name == "full" else 0.5,
                "seconds_per_item": 0.0, "decode_frames_per_second": 0.0}

    monkeypatch.setattr(video, "evaluate_policy", evaluate)
    monkeypatch.setattr(models, "load_video_chat", lambda *a, **k: SimpleNamespace(name="fake"))
    argv = ["--policies", "full,h2o", "--limit", "1", "--n-test", "4", "--out-dir", str(tmp_path)]
    with pytest.raises(RuntimeError, match="simulated"):
        video.main(argv)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["policies"]) == {"full"} and results["pending"] == ["h2o"]
    assert video.main(argv) == 0
    assert calls == ["full", "h2o", "h2o"]
    assert set(json.loads((tmp_path / "results.json").read_text())["policies"]) == {"full", "h2o"}
    assert video.main(argv[:-2] + ["--budget", "0.3", "--out-dir", str(tmp_path)]) == 0
    assert calls == ["full", "h2o", "h2o", "h2o"]  # another budget: only the baseline runs again


@pytest.mark.parametrize("argv, words", [
    (["--limit", "0"], "--limit: must be at least 1, got 0"),
    (["--frames", "0"], "--frames: must be at least 1"),
    (["--n-up", "0"], "--n-up: must be at least 1"),
    (["--budget", "2"], "--budget: expected a fraction in (0, 1]"),
    (["--budget", "matched", "--policies", "full,h2o"], "--budget matched needs the namm policy in --policies"),
    (["--n-up", "256"], "--n-up: the NAMM checkpoint"),  # the shipped one sets 512
    (["--policies", "../x"], "--policies: unknown name '../x'"),
    (["--ckpt", "no/such"], "--ckpt no/such: not a usable NAMM checkpoint"),
    (["--benchmark", "mlvu"], "--benchmark mlvu needs --data-dir"),
    (["--benchmark", "mlvu", "--data-dir", "no/such"], "--data-dir no/such: folder not found"),
    (["--benchmark", "longvideobench", "--answer-format", "words"], "--answer-format words: LongVideoBench"),
])
def test_bad_arguments_are_one_line_before_anything_loads(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.setattr(video, "builtin_split", lambda n: pytest.fail("data was made before the arguments were checked"))
    monkeypatch.setattr(models, "load_video_chat", lambda *a, **k: pytest.fail("the model loaded first"))
    assert video.main(argv + ["--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
