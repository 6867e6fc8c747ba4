"""`python -m eval.video.budgets`: several eval.video runs that differ only in the baselines' budget, in one
table with intervals and one plot."""
import json

import pytest

from eval.video.budgets import main

TASKS = ("count", "needle")


def _policy(correct: dict[str, list[bool]], cache: float) -> dict:
    per_task = {t: {"num": len(c), "num_missing": 0, "acc": sum(c) / len(c), "correct": c} for t, c in correct.items()}
    return {"per_task": per_task, "m_avg": sum(v["acc"] for v in per_task.values()) / len(per_task),
            "cache_fraction": cache, "seconds_per_item": 1.0}


def _run(folder, budget, policies, frames=64):
    folder.mkdir(parents=True)
    results = {"model": "m", "benchmark": "builtin", "frames": frames, "answer_format": "words", "limit": 4,
               "ckpt": "c", "ckpt_sha256": "abc", "budget": budget,
               "schedule": {"n_up": 512, "description": "every policy: update every 512 tokens"},
               "policies": policies}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


FULL = _policy({"count": [True, True, True, False], "needle": [True, True, True, True]}, 1.0)
NAMM = _policy({"count": [True, False, False, False], "needle": [True, True, False, False]}, 0.3)


def test_budgets_in_one_table_with_paired_differences_to_the_namm(tmp_path, capsys):
    same_as_namm = _policy({"count": [True, False, False, False], "needle": [True, True, False, False]}, 0.3)
    better = _policy({"count": [True, True, True, False], "needle": [True, True, True, False]}, 0.5)
    matched = _run(tmp_path / "matched", "matched", {"namm": NAMM, "full": FULL, "h2o": same_as_namm})
    half = _run(tmp_path / "half", 0.5, {"full": FULL, "namm": NAMM, "h2o": better})
    assert main([str(matched), str(half / "results.json"), "--out", str(tmp_path / "out" / "sweep")]) == 0  # folder or file
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())["rows"]
    assert list(rows) == ["full", "namm", "h2o @ 0.5", "h2o @ matched"]
    assert rows["namm"]["m_avg"] == pytest.approx((0.25 + 0.5) / 2)
    assert rows["h2o @ matched"]["vs_namm"] == 0 and rows["h2o @ matched"]["vs_namm_ci"] == [0, 0]
    assert rows["h2o @ 0.5"]["vs_namm"] == pytest.approx(0.75 - 0.375)
    low, high = rows["h2o @ 0.5"]["vs_namm_ci"]
    assert 0 < low < 0.375 < high
    lo, hi = rows["full"]["m_avg_ci"]
    assert lo < rows["full"]["m_avg"] < hi
    table = (tmp_path / "out" / "sweep.md").read_text()
    assert "| h2o | 0.5 | 75.0 [" in table and "+37.5 [" in table
    assert (tmp_path / "out" / "sweep.png").stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_runs_that_differ_in_more_than_the_budget_are_refused(tmp_path, capsys):
    a = _run(tmp_path / "a", "matched", {"full": FULL, "namm": NAMM})
    b = _run(tmp_path / "b", 0.5, {"full": FULL, "namm": NAMM}, frames=32)
    assert main([str(a), str(b), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "b/results.json" in err and "'frames'" in err and "--budget" in err
    assert not (tmp_path / "x.md").exists()


def test_an_unfinished_or_inconsistent_run_is_named(tmp_path, capsys):
    a = _run(tmp_path / "a", "matched", {"full": FULL, "namm": NAMM})
    other_namm = _policy({"count": [False] * 4, "needle": [True] * 4}, 0.3)
    b = _run(tmp_path / "b", 0.5, {"full": FULL, "namm": other_namm})
    assert main([str(a), str(b), "--out", str(tmp_path / "x")]) == 2
    assert "b/results.json policy namm" in capsys.readouterr().err
    data = json.loads((a / "results.json").read_text())
    data["pending"] = ["h2o"]
    (a / "results.json").write_text(json.dumps(data))
    assert main([str(a), "--out", str(tmp_path / "x")]) == 2
    assert "not finished" in capsys.readouterr().err


def test_a_top_k_namm_is_a_row_per_budget_and_each_row_is_paired_with_the_namm_at_its_budget(tmp_path):
    def at(budget, policy):
        return {**policy, "budget": budget}

    namm_half = _policy({"count": [True, True, False, False], "needle": [True, True, True, False]}, 0.5)
    namm_quarter = _policy({"count": [True, False, False, False], "needle": [True, False, False, False]}, 0.25)
    h2o = _policy({"count": [True, True, False, False], "needle": [True, True, False, False]}, 0.5)
    half = _run(tmp_path / "half", 0.5, {"full": FULL, "namm": at(0.5, namm_half), "h2o": at(0.5, h2o)})
    quarter = _run(tmp_path / "quarter", 0.25, {"namm": at(0.25, namm_quarter), "h2o": at(0.25, h2o)})
    assert main([str(half), str(quarter), "--out", str(tmp_path / "sweep")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert list(rows) == ["full", "namm @ 0.5", "namm @ 0.25", "h2o @ 0.5", "h2o @ 0.25"]
    assert rows["h2o @ 0.5"]["vs_namm"] == pytest.approx(0.5 - 0.625)
    assert rows["h2o @ 0.25"]["vs_namm"] == pytest.approx(0.5 - 0.25)
    assert "vs_namm" not in rows["full"] and "vs_namm" not in rows["namm @ 0.5"]
    assert "to the NAMM at the same budget" in (tmp_path / "sweep.md").read_text()
