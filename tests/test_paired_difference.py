"""bench.paired_difference: rows of different eval.lm runs compared on the same items, as eval.lm's own
paired difference compares rows of one run."""
import json

import pytest

from bench.paired_difference import main
from core.errors import UserError


def _run(path, policies):
    tasks = ["a", "b"]
    results = {"tasks": tasks, "policies": {
        name: {t: {"item_scores": scores[t], "cache_fraction": 0.5} for t in tasks} for name, scores in policies.items()}}
    path.write_text(json.dumps(results))
    return str(path)


FULL = {"a": [100.0, 100.0, 0.0, 100.0], "b": [100.0, 0.0, 100.0, 100.0]}


def test_a_row_of_another_run_is_compared_on_the_same_items(tmp_path, capsys):
    one = _run(tmp_path / "one.json", {"full": FULL, "namm": {"a": [100.0, 0, 0, 100.0], "b": [100.0, 0, 0, 0]}})
    two = _run(tmp_path / "two.json", {"full": FULL, "namm": {"a": [100.0, 100.0, 0, 100.0], "b": [100.0, 0, 0, 0]}})
    assert main([f"{one}:namm", f"{two}:namm"]) == 0
    line = [r for r in capsys.readouterr().out.splitlines() if r.startswith("two:namm")][0]
    # task a: (300 - 200) / 300, task b: 0 -> mean 0.167
    assert "+0.167" in line


def test_runs_whose_full_cache_scored_other_items_are_refused(tmp_path):
    one = _run(tmp_path / "one.json", {"full": FULL, "namm": FULL})
    other = {"a": [0.0, 100.0, 0.0, 100.0], "b": FULL["b"]}
    two = _run(tmp_path / "two.json", {"full": other, "namm": FULL})
    with pytest.raises(UserError, match="not paired"):
        main([f"{one}:namm", f"{two}:namm"])


def _video_run(path, policies):
    results = {"benchmark": "builtin", "policies": {
        name: {"per_task": {t: {"correct": c} for t, c in tasks.items()}, "cache_fraction": 0.25}
        for name, tasks in policies.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return str(path)


VIDEO_FULL = {"needle": [True, True, True, False], "count": [True, False, True, True]}


def test_video_rows_of_two_runs_are_compared_in_m_avg_points_and_keep_apart_equal_names(tmp_path, capsys):
    one = _video_run(tmp_path / "a" / "budget-0.25" / "results.json",
                     {"full": VIDEO_FULL, "namm": {"needle": [True, False, False, False], "count": [True] * 4}})
    two = _video_run(tmp_path / "b" / "budget-0.25" / "results.json",
                     {"full": VIDEO_FULL, "namm": {"needle": [True, True, True, True], "count": [True] * 4}})
    assert main([f"{one}:namm", f"{two}:namm"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = [r for r in out if r.startswith(f"{two}:namm")][0]
    # M-Avg 100.0 against (25 + 100) / 2 = 62.5: +37.5 points
    assert " 100.0 " in line and "+37.5" in line


def test_video_runs_on_other_items_are_refused(tmp_path):
    one = _video_run(tmp_path / "one.json", {"full": VIDEO_FULL, "namm": VIDEO_FULL})
    two = _video_run(tmp_path / "two.json", {"full": {"needle": [False] * 4, "count": [True] * 4}, "namm": VIDEO_FULL})
    with pytest.raises(UserError, match="not paired"):
        main([f"{one}:namm", f"{two}:namm"])
