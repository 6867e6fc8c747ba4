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
