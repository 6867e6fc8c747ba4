"""zoo.video.train --stop-after and the stage chain of zoo.video.rebuild, on a tiny generated benchmark."""
import json
import math

import pytest
import torch

from core.errors import ExistsError
from zoo.video import make_builtin, rebuild, train
from zoo.video.model import load_video_model

SMALL = {"frames": 8, "batch": 4, "lr": 1e-3, "seed": 0, "lookup_share": 0.0, "eval_every": 100,
         "eval_items": 8, "max_minutes": 1e6}
TABLE = (
    ("A", {"steps": 6, "warmup": 2, "aux_share": 0.25, "caption_share": 0.25, "loss": "token", "stop_after": 3}),
    ("B", {"steps": 4, "warmup": 1, "caption_share": 0.25, "bare_share": 0.25, "letter_weight": 3.0, "stop_after": 2}),
    ("C", {"steps": 2, "warmup": 1, "bare_share": 0.25, "letter_weight": 3.0, "hint_weight": 0.5}),
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("video_data")
    make_builtin.main(["--out", str(d), "--n-train", "2", "--n-test", "2", "--seed", "3"])
    return d


def _info(folder):
    return json.loads((folder / "training.json").read_text())


def test_stop_after_stops_there_and_keeps_the_schedule_of_steps(data, tmp_path, one_thread):
    out = tmp_path / "m"
    argv = ["--data", str(data), "--out", str(out), "--frames", "8", "--batch", "4", "--eval-every", "100",
            "--eval-items", "8", "--steps", "8", "--warmup", "2", "--stop-after", "3", "--threads", "1"]
    assert train.main(argv) == 0
    info = _info(out)
    assert [h["step"] for h in info["history"]] == [3]  # the stop is evaluated and saved like the end
    assert info["args"]["stop_after"] == "3" and info["args"]["steps"] == "8"
    s = 2  # scheduler index of step 3
    assert info["history"][-1]["lr"] == pytest.approx(1e-3 * min(1.0, (s + 1) / 2) * 0.5 * (1 + math.cos(math.pi * s / 8)))
    model, processor = load_video_model(out)
    # --loss token is the model's own causal-LM loss (what the first stages were trained with)
    torch.manual_seed(0)
    ids = torch.randint(5, 40, (2, 9))
    labels = torch.full_like(ids, -100)
    labels[0, 4:] = ids[0, 4:]
    labels[1, 7:] = ids[1, 7:]
    with torch.no_grad():
        outp = model(input_ids=ids, labels=labels)
    assert train.weighted_loss(outp.logits, labels, torch.ones(2), token_mean=True).item() == pytest.approx(outp.loss.item(), rel=1e-5)
    assert train.weighted_loss(outp.logits, labels, torch.ones(2)).item() != pytest.approx(outp.loss.item(), rel=1e-3)
    with pytest.raises(SystemExit):
        train.main(argv[:-4] + ["--stop-after", "9", "--threads", "1"])  # past --steps


def test_stages_chain_resume_and_repeat_exactly(data, tmp_path, one_thread):
    work, out = tmp_path / "work", tmp_path / "out"
    res = rebuild.rebuild(data, out, work, TABLE, SMALL, threads=1)
    assert [r["name"] for r in res["stages"]] == ["A", "B", "C"] and not any(r["skipped"] for r in res["stages"])
    prev = None
    for name, args in TABLE:
        info = _info(work / name)
        assert info["args"]["init"] == (str(work / prev) if prev else "None")
        assert info["history"][-1]["step"] == args.get("stop_after", args["steps"])
        assert info["args"]["steps"] == str(args["steps"])
        assert info["args"]["loss"] == args.get("loss", "sequence")
        prev = name
    # the output is the last stage plus rebuild.json, and loads
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in (work / "C").iterdir() if p.name != rebuild.STAGE_FILE] + ["rebuild.json"])
    assert rebuild.weights_sha256(out) == rebuild.weights_sha256(work / "C")
    model, processor = load_video_model(out)
    assert json.loads((out / "rebuild.json").read_text())["final_stage"] == "C"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no assembly leftovers

    # complete stages are not run again
    before = {n: (work / n / "model.safetensors").stat().st_mtime_ns for n, _ in TABLE}
    with pytest.raises(ExistsError, match="--overwrite"):  # the copy is not written over unasked
        rebuild.rebuild(data, out, work, TABLE, SMALL, threads=1)
    again = rebuild.rebuild(data, out, work, TABLE, SMALL, threads=1, overwrite=True)
    assert all(r["skipped"] for r in again["stages"])
    assert before == {n: (work / n / "model.safetensors").stat().st_mtime_ns for n, _ in TABLE}

    # rerunning a stage from the same init gives the same weights (deterministic)
    sha_b = rebuild.weights_sha256(work / "B")
    rebuild.rebuild(data, None, work, TABLE, SMALL, threads=1, only="B", force=True)
    assert rebuild.weights_sha256(work / "B") == sha_b

    # a stage whose init changed is no longer complete; --stages cannot skip over it
    (work / "A" / rebuild.STAGE_FILE).unlink()
    with pytest.raises(RuntimeError, match="stage A"):
        rebuild.rebuild(data, out, work, TABLE, SMALL, threads=1, only="C", overwrite=True)


def test_pick_and_scale():
    names = ["A", "B", "C", "D", "E"]
    assert rebuild.pick(names, None) == names
    assert rebuild.pick(names, "C-") == ["C", "D", "E"]
    assert rebuild.pick(names, "B-C,E") == ["B", "C", "E"]
    assert rebuild.pick(names, "-B") == ["A", "B"]
    with pytest.raises(ValueError):
        rebuild.pick(names, "F")
    small = dict(rebuild.scaled(rebuild.STAGES, 0.01))
    assert small["A"]["steps"] == 50 and small["A"]["stop_after"] == 25 and small["B"]["stop_after"] == 5
    assert small["E"].get("stop_after") is None
    # the table is the lineage: stop steps of the wall-clock-stopped runs
    table = dict(rebuild.STAGES)
    assert [rebuild.last_step(table[n]) for n in names] == [2500, 503, 500, 1200, 3000]


def test_cli_lists_the_stages(capsys, tmp_path):
    assert rebuild.main(["--out", str(tmp_path / "x"), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == ["A", "B", "C", "D", "E"]
    assert "--stop-after 503" in lines[1] and "--hint-weight 0.5" in lines[4] and "--stop-after" not in lines[4]
