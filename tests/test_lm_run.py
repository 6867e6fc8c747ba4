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
