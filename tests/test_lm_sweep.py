"""`eval.lm --budget 0.5,0.25`: one run at several budgets, the full cache run once, a sweep table and plot."""
import json

import pytest

from core.namm import NAMM, NAMMConfig
from core.namm_x import baseline_readout
from eval.lm.__main__ import main

BASE = ["--tasks", "passkey,fact_qa", "--n", "3", "--length", "200", "--threads", "1"]


def test_a_budget_list_runs_each_baseline_per_budget_and_the_full_cache_once(tmp_path, fake_lm):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "full,h2o,tova", "--budget", "0.5,0.25", "--out-dir", str(out)]) == 0
    calls = [name for name, _ in fake_lm]
    assert calls.count("full") == 6 and calls.count("h2o") == 12 and calls.count("tova") == 12
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["budgets"] == [0.5, 0.25]
    assert [e["cache_fraction"] for e in sweep["policies"]["h2o"]] == pytest.approx([0.5, 0.25])
    for b in ("0.5", "0.25"):
        one = json.loads((out / f"budget-{b}" / "results.json").read_text())
        assert one["budget"] == float(b)
    assert "budget 0.25" in (out / "sweep.md").read_text() and (out / "sweep.png").stat().st_size > 0
    assert main(BASE + ["--policies", "full,h2o,tova", "--budget", "0.5,0.25", "--out-dir", str(out)]) == 0
    assert len(fake_lm) == 30  # a rerun reuses every prediction


def test_a_top_k_namm_keeps_each_budget_of_the_sweep(tmp_path, fake_lm):
    config = NAMMConfig(features="namm_x", selection="topk", budget=0.4, head_mode="shared")
    NAMM(config, baseline_readout(config.feature_names, 0, "tova")).save_pretrained(tmp_path / "x")
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "full,namm", "--ckpt", str(tmp_path / "x"), "--budget", "0.5,0.25",
                        "--out-dir", str(out)]) == 0
    budgets = sorted(p.config.budget for p in fake_lm.policies if p.name == "namm")
    assert budgets == [0.25] * 6 + [0.5] * 6
    sweep = json.loads((out / "sweep.json").read_text())
    assert [e["cache_fraction"] for e in sweep["policies"]["namm"]] == pytest.approx([0.5, 0.25])


@pytest.mark.parametrize("budget", ["0.5,matched", "0.5,0.5", "0.5,abc"])
def test_a_bad_budget_list_is_one_line(tmp_path, fake_lm, capsys, budget):
    assert main(BASE + ["--policies", "full,h2o", "--budget", budget, "--out-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget" in err[0] and not fake_lm
