"""eval.rl: each protocol's result is written when it finishes; a rerun reuses it; bad arguments are
one line and status 2 before anything loads; matched budgets episode by episode; one update schedule."""
import json

import pytest

import eval.rl.__main__ as rl

SHORT = ["--env", "hopper", "--episodes", "1", "--batch", "1", "--max-steps", "4", "--threads", "1"]


def test_a_failing_protocol_loses_none_of_the_earlier_ones(tmp_path, monkeypatch, one_thread):
    real, calls = rl.run_protocol, []

    def failing_second(bundle, name, args, *rest):
        calls.append(name)
        if name == "h2o":
            raise RuntimeError("simulated failure in one policy")
        return real(bundle, name, args, *rest)

    monkeypatch.setattr(rl, "run_protocol", failing_second)
    argv = SHORT + ["--policies", "full,h2o", "--out-dir", str(tmp_path)]
    with pytest.raises(RuntimeError, match="simulated"):
        rl.main(argv)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["protocols"]) == {"full"} and results["pending"] == ["h2o"]
    assert len(list((tmp_path / "policies").glob("full.*.json"))) == 1

    monkeypatch.setattr(rl, "run_protocol", lambda b, n, a, *rest: (calls.append(n), real(b, n, a, *rest))[1])
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
    (["--budget", "matched", "--policies", "full,h2o"], "--budget matched needs the namm policy in --policies"),
    (["--n-up", "256"], "--n-up: the NAMM checkpoint"),  # the shipped one sets 512
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


def test_matched_budgets_are_the_namms_fraction_in_the_same_episode(tmp_path, window_namm, one_thread):
    """30 steps are 89 tokens; on n_up 16 the NAMM keeps 11 at its last update (token 80). Each baseline
    gets that fraction, 11/80, in the episode of the same seed, and ends with the NAMM's cache size
    within one token; given the NAMM's final fraction (20/89) instead, it would keep 7 tokens more."""
    ckpt = window_namm(window=10, n_up=16)
    argv = ["--env", "hopper", "--episodes", "2", "--batch", "2", "--max-steps", "30", "--threads", "1",
            "--policies", "h2o,namm,recency", "--budget", "matched", "--ckpt", str(ckpt), "--out-dir", str(tmp_path)]
    assert rl.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["protocols"]) == ["namm", "h2o", "recency"]
    assert results["budget"] == "matched" and results["budget_mode"].startswith("matched per episode")
    namm = results["protocols"]["namm"]
    assert namm["lengths"] == [30, 30]
    assert namm["fractions_at_update"] == pytest.approx([11 / 80] * 2)
    for baseline in ("h2o", "recency"):
        row = results["protocols"][baseline]
        assert row["budgets"] == namm["fractions_at_update"]
        assert row["lengths"] == namm["lengths"]
        for mine, theirs, length in zip(row["cache_fractions"], namm["cache_fractions"], row["lengths"]):
            assert abs(mine - theirs) * (3 * length - 1) <= 1 + 1e-6
    assert rl.main(argv) == 0  # a rerun reuses every protocol, the per-episode budgets included
    assert json.loads((tmp_path / "results.json").read_text())["protocols"] == results["protocols"]


def test_every_protocol_updates_on_one_schedule(tmp_path, monkeypatch, capsys, window_namm, one_thread):
    seen, real = [], rl.attach

    def recording_attach(model, policy, *args, **kwargs):
        seen.append(policy)
        return real(model, policy, *args, **kwargs)

    monkeypatch.setattr(rl, "attach", recording_attach)
    ckpt = window_namm(window=10, n_up=16)
    assert rl.main(SHORT + ["--policies", "window,full,namm,h2o,l2,recency", "--ckpt", str(ckpt),
                            "--out-dir", str(tmp_path / "a")]) == 0
    assert [p.name for p in seen] == ["full", "namm", "h2o", "l2", "recency"]
    assert len({id(p.schedule) for p in seen}) == 1 and (seen[0].n_up, seen[0].update_at_prompt_end) == (16, False)
    out = capsys.readouterr().out
    assert "every policy: update every 16 tokens, not at prompt end (set by the NAMM checkpoint's config.json)" in out
    assert "baselines' budget: fixed: every baseline keeps 0.5 of the processed tokens" in out
    assert rl.main(SHORT + ["--policies", "namm,h2o", "--ckpt", str(ckpt), "--n-up", "32",
                            "--out-dir", str(tmp_path / "b")]) == 2
    assert "--n-up: the NAMM checkpoint" in capsys.readouterr().err


def test_a_budget_list_is_one_run_with_a_sweep_table(tmp_path, one_thread):
    """--budget 0.5,0.25: each budget's results in budget-<b>/, the full cache run once for both, a sweep table."""
    import eval.rl.__main__ as rl

    assert rl.main(SHORT + ["--policies", "full,h2o", "--budget", "0.5,0.25", "--out-dir", str(tmp_path)]) == 0
    for b in ("0.5", "0.25"):
        results = json.loads((tmp_path / f"budget-{b}" / "results.json").read_text())
        assert results["protocols"]["h2o"]["budget"] == float(b)
    stored = sorted(p.name.split(".")[0] for p in (tmp_path / "policies").glob("*.json"))
    assert stored == ["full", "h2o", "h2o"]
    table = (tmp_path / "sweep.md").read_text()
    assert "budget 0.25" in table and "| h2o |" in table and (tmp_path / "sweep.png").stat().st_size > 1000
