"""eval.lm names the file for empty or non-UTF-8 data, and clears a killed run's temporaries."""
import json
import subprocess
import sys

import pytest

from eval.lm.__main__ import main


@pytest.mark.parametrize("content, words", [(b"", "trec.jsonl: no records (the file is empty)"),
                                            (b"\n\n", "trec.jsonl: no records"),
                                            (b'{"input": "caf\xe9"}\n', "trec.jsonl:1: not UTF-8 text")])
def test_empty_or_non_utf8_benchmark_file_is_named(tmp_path, fake_lm, capsys, content, words):
    (tmp_path / "trec.jsonl").write_bytes(content)
    assert main(["--benchmark", "longbench", "--data-dir", str(tmp_path), "--tasks", "trec", "--policies", "full",
                 "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_non_utf8_prediction_file_is_named_by_score(tmp_path, capsys):
    pred = tmp_path / "preds"
    pred.mkdir()
    (pred / "trec.jsonl").write_bytes(json.dumps({"pred": "x", "answers": ["y"]}).encode() + b"\n\xff\xfe\n")
    assert main(["score", "--benchmark", "longbench", str(pred), "--out", str(tmp_path / "s.json")]) == 2
    assert "trec.jsonl:2: not UTF-8 text" in capsys.readouterr().err


def test_a_killed_runs_temporaries_are_removed_on_start(tmp_path, fake_lm):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "preds").mkdir(parents=True)
    stale = out / f"results.json.{dead.pid}-a1b2c3d4.tmp"
    stale.write_text("{")
    live = out / f"results.json.{subprocess.os.getppid()}-a1b2c3d4.tmp"  # a writer that still runs
    live.write_text("{")
    assert main(["--tasks", "passkey", "--policies", "full", "--n", "1", "--length", "200",
                 "--out-dir", str(out)]) == 0
    assert not stale.exists() and live.exists()
    assert not [p for p in out.rglob("*.tmp") if p != live]
