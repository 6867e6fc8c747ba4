"""`python -m eval.lm` end to end on the embedded model: two tasks, short prompts, two policies."""
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
    assert results["summary"]["full"]["normalised_score"] in (1.0, None)
    assert (out / "score_vs_cache.png").stat().st_size > 1000
    lines = (out / "preds" / "h2o" / "passkey.jsonl").read_text().splitlines()
    assert len(lines) == 2

    # Resumable: a second run recomputes nothing and appends nothing.
    assert main(argv) == 0
    assert (out / "preds" / "h2o" / "passkey.jsonl").read_text().splitlines() == lines


@pytest.mark.slow
def test_matched_budget_follows_the_namm(tmp_path):
    out = tmp_path / "run"
    main(["--tasks", "passkey", "--policies", "namm,l2", "--budget", "matched", "--n", "1", "--length", "300",
          "--out-dir", str(out)])
    results = json.loads((out / "results.json").read_text())
    # The all-zero NAMM keeps everything, so the matched L2 budget is the whole cache.
    assert results["policies"]["l2"]["passkey"]["budget"] == 1.0
    assert results["policies"]["l2"]["passkey"]["cache_fraction"] == 1.0


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
