"""`python -m eval.lm` end to end on the embedded model: two tasks, short prompts, two policies; matched
budgets item by item; one update schedule for every policy."""
import json

import pytest

from eval.lm.__main__ import main


@pytest.mark.slow
def test_short_run_writes_table_json_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--tasks", "passkey,kv_retrieval", "--policies", "full,h2o", "--n", "2", "--length", "300",
            "--budget", "0.5", "--n-up", "128", "--out-dir", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "full" in table and "h2o" in table and "norm." in table
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"full", "h2o"}
    assert results["policies"]["full"]["passkey"]["cache_fraction"] == 1.0
    assert 0.4 < results["policies"]["h2o"]["kv_retrieval"]["cache_fraction"] < 0.6
    assert results["policies"]["full"]["passkey"]["score"] > 0  # so the full cache normalises to exactly 1
    assert results["summary"]["full"]["normalised_score"] == 1.0
    assert (out / "score_vs_cache.png").stat().st_size > 1000
    lines = (out / "preds" / "h2o" / "passkey.jsonl").read_text().splitlines()
    assert len(lines) == 2

    # Resumable: a second run recomputes nothing and appends nothing.
    assert main(argv) == 0
    assert (out / "preds" / "h2o" / "passkey.jsonl").read_text().splitlines() == lines


def _rows(out, policy, task):
    return [json.loads(line) for line in (out / "preds" / policy / f"{task}.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_matched_budget_follows_the_namm_item_by_item(tmp_path, window_namm):
    """Prompts of about 300 tokens, n_up 128 and an update at the prompt's end: the NAMM keeps 101 tokens
    at each update. Each baseline gets, item by item, the NAMM's fraction after its last update and holds
    the NAMM's cache size on that item within one token. Answers differ in length (one policy stops at
    EOS earlier), so the caches are compared at the last update and in tokens evicted by the end."""
    ckpt = window_namm(window=100, n_up=128, at_prompt_end=True)
    out = tmp_path / "run"
    tasks = ["passkey", "kv_retrieval"]
    assert main(["--tasks", ",".join(tasks), "--policies", "l2,namm,h2o", "--budget", "matched", "--n", "2",
                 "--length", "300", "--ckpt", str(ckpt), "--threads", "1", "--out-dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["policies"]) == ["namm", "l2", "h2o"]  # the NAMM first
    assert results["budget"] == "matched" and results["budget_mode"].startswith("matched per item")
    assert (results["schedule"]["n_up"], results["schedule"]["update_at_prompt_end"]) == (128, True)
    for task in tasks:
        namm = _rows(out, "namm", task)
        assert len(namm) == 2 and all(r["prompt_tokens"] > 128 for r in namm)
        assert all(r["fraction_at_update"] == pytest.approx(101 / r["prompt_tokens"]) for r in namm)
        for baseline in ("l2", "h2o"):
            rows = _rows(out, baseline, task)
            assert [r["id"] for r in rows] == [r["id"] for r in namm]
            assert [r["settings"]["budget"] for r in rows] == [r["fraction_at_update"] for r in namm]
            assert results["policies"][baseline][task]["budgets"] == [r["fraction_at_update"] for r in namm]
            for mine, theirs in zip(rows, namm):
                assert abs(mine["fraction_at_update"] - theirs["fraction_at_update"]) * theirs["prompt_tokens"] <= 1 + 1e-6
                evicted = [r["processed_tokens"] * (1 - r["cache_fraction"]) for r in (mine, theirs)]
                assert abs(evicted[0] - evicted[1]) <= 1 + 1e-6


def test_every_policy_updates_on_the_namm_checkpoints_schedule(tmp_path, fake_lm, window_namm, capsys):
    ckpt = window_namm(window=10, n_up=64, at_prompt_end=False)
    out = tmp_path / "run"
    assert main(["--tasks", "passkey", "--policies", "full,h2o,namm,l2,recency", "--n", "2", "--length", "200",
                 "--ckpt", str(ckpt), "--out-dir", str(out)]) == 0
    schedules = {id(p.schedule) for p in fake_lm.policies}
    assert len(fake_lm.policies) == 10 and len(schedules) == 1
    assert (fake_lm.policies[0].n_up, fake_lm.policies[0].update_at_prompt_end) == (64, False)
    header = "every policy: update every 64 tokens, not at prompt end (set by the NAMM checkpoint's config.json)"
    assert header in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["schedule"]["description"] == header
    # The baselines' options may not contradict the checkpoint; without the NAMM they set the schedule.
    assert main(["--tasks", "passkey", "--policies", "namm,h2o", "--ckpt", str(ckpt), "--prompt-end",
                 "--out-dir", str(out)]) == 2
    assert "--prompt-end: the NAMM checkpoint" in capsys.readouterr().err
    fake_lm.policies.clear()
    assert main(["--tasks", "passkey", "--policies", "full,h2o", "--n-up", "32", "--no-prompt-end",
                 "--out-dir", str(tmp_path / "other")]) == 0
    assert {(p.n_up, p.update_at_prompt_end) for p in fake_lm.policies} == {(32, False)}
    assert len({id(p.schedule) for p in fake_lm.policies}) == 1


def _results(full_vt: float) -> dict:
    cell = lambda score: {"score": score, "cache_fraction": 0.5}
    return {"tasks": ["passkey", "variable_tracking"], "policies": {
        "full": {"passkey": cell(100.0), "variable_tracking": cell(full_vt)},
        "h2o": {"passkey": cell(50.0), "variable_tracking": cell(75.0)},
    }}


def test_a_task_at_chance_is_flagged_and_left_out_of_the_second_normalised_score():
    from eval.lm.run import add_normalised, format_table

    results = _results(full_vt=25.0)
    add_normalised(results, {"passkey": 0.0, "variable_tracking": 100 / 3})
    # The paper's mean keeps every task: h2o "beats" the full cache on a task the model guesses.
    assert results["summary"]["h2o"]["normalised_score"] == pytest.approx((0.5 + 3.0) / 2)
    assert results["summary"]["h2o"]["normalised_score_above_chance"] == pytest.approx(0.5)
    assert set(results["tasks_at_chance"]) == {"variable_tracking"}
    table = format_table(results)
    assert "variable_tracking: the full cache scores 25.0, not above chance (33.3)" in table
    assert "h2o 0.500" in table

    results = _results(full_vt=60.0)
    add_normalised(results, {"passkey": 0.0, "variable_tracking": 100 / 3})
    assert "tasks_at_chance" not in results and "normalised_score_above_chance" not in results["summary"]["h2o"]
    assert "not above chance" not in format_table(results)


def test_builtin_taskset_knows_each_tasks_chance():
    from eval.lm.run import builtin_taskset

    taskset = builtin_taskset(["variable_tracking", "fewshot_classification", "passkey"], 2, 300, 0, None)
    assert taskset.chance == pytest.approx({"variable_tracking": 100 / 3, "fewshot_classification": 25.0,
                                            "passkey": 0.0})


def test_bootstrap_interval_is_paired_and_brackets_the_estimate():
    from eval.lm.bootstrap import normalised_interval

    full = {"a": [1, 1, 1, 0, 1, 1, 1, 1, 1, 1], "b": [1, 0] * 10}
    same = normalised_interval(full, full, ["a", "b"])
    assert same == (1.0, 1.0)  # paired draws: a policy identical to the full cache has no spread
    worse = {"a": [1, 0, 1, 0, 1, 1, 0, 1, 1, 0], "b": [1, 0] * 5 + [0, 0] * 5}
    low, high = normalised_interval(worse, full, ["a", "b"])
    point = (6 / 9 + 5 / 10) / 2
    assert low < point < high < 1.0
    assert normalised_interval(worse, full, ["missing"]) is None
