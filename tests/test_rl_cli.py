"""eval.rl: each protocol's result is written when it finishes; a rerun reuses it; bad arguments are
one line and status 2 before anything loads."""
import json

import pytest

import eval.rl.__main__ as rl

SHORT = ["--env", "hopper", "--episodes", "1", "--batch", "1", "--max-steps", "4", "--threads", "1"]


def test_a_failing_protocol_loses_none_of_the_earlier_ones(tmp_path, monkeypatch, one_thread):
    real, calls = rl.run_protocol, []

    def failing_second(bundle, name, args):
        calls.append(name)
        if name == "h2o":
            raise RuntimeError("simulated failure in one policy")
        return real(bundle, name, args)

    monkeypatch.setattr(rl, "run_protocol", failing_second)
    argv = SHORT + ["--policies", "full,h2o", "--out-dir", str(tmp_path)]
    with pytest.raises(RuntimeError, match="simulated"):
        rl.main(argv)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["protocols"]) == {"full"} and results["pending"] == ["h2o"]
    assert len(list((tmp_path / "policies").glob("full.*.json"))) == 1

    monkeypatch.setattr(rl, "run_protocol", lambda b, n, a: (calls.append(n), real(b, n, a))[1])
    assert rl.main(argv) == 0
    assert calls == ["full", "h2o", "h2o"]  # full was not run again
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["protocols"]) == {"full", "h2o"} and "pending" not in results
    # Another budget is another result: h2o runs again, the first one stays on disk.
    assert rl.main(SHORT + ["--policies", "full,h2o", "--budget", "0.25", "--out-dir", str(tmp_path)]) == 0
    assert calls == ["full", "h2o", "h2o", "h2o"]
    assert len(list((tmp_path / "policies").glob("h2o.*.json"))) == 2


@pytest.mark.parametrize("argv, words", [
    (["--max-steps", "0"], "--max-steps: must be at least 1, got 0"),
    (["--max-steps", "-2"], "--max-steps: must be at least 1"),
    (["--episodes", "0"], "--episodes: must be at least 1"),
    (["--batch", "0"], "--batch: must be at least 1"),
    (["--n-up", "0"], "--n-up: must be at least 1"),
    (["--budget", "0"], "--budget: expected a fraction in (0, 1]"),
    (["--env", "pong"], "--env: unknown environment 'pong'"),
    (["--policies", "full,../../x"], "--policies: unknown name '../../x'"),
    (["--ckpt", "no/such"], "--ckpt no/such: not a usable NAMM checkpoint"),
    (["--dt", "no/such"], "--dt: no Decision Transformer at no/such"),
])
def test_bad_arguments_are_one_line_before_anything_loads(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.setattr(rl, "load_dt", lambda *a, **k: pytest.fail("the DT loaded before the arguments were checked"))
    assert rl.main(argv + ["--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
