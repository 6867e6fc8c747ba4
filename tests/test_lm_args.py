"""eval.lm refuses bad arguments with one line and status 2, before the model loads."""
import json

import numpy as np
import pytest

import eval.lm.run as run
from core.namm import NAMM
from eval.lm.__main__ import main


def _no_model(name):
    raise AssertionError("the model was loaded before the arguments were checked")


def _bad_namm(tmp_path):
    folder = tmp_path / "bad_namm"
    NAMM.zeros().save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["bam_hidden"] = 16  # the weights were saved for 32 hidden units
    del config["n_params"]
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("argv, words", [
    (["--policies", "../../x"], "--policies: unknown name '../../x'"),
    (["--policies", "full,h2o,full"], "--policies: a name is listed twice"),
    (["--tasks", "../evil"], "--tasks: unknown name '../evil'"),
    (["--tasks", "passkey,"], "--tasks: expected comma-separated names"),
    (["--benchmark", "nope"], "--benchmark: unknown 'nope'"),
    (["--budget", "0"], "--budget: expected a fraction in (0, 1], got '0'"),
    (["--budget", "1.5"], "--budget: expected a fraction in (0, 1]"),
    (["--budget", "half"], "--budget: expected a fraction in (0, 1]"),
    (["--budget", "matched", "--policies", "h2o"], "--budget matched needs the namm policy"),
    (["--n", "0"], "--n: must be at least 1, got 0"),
    (["--n", "-3"], "--n: must be at least 1, got -3"),
    (["--n-up", "0"], "--n-up: must be at least 1"),
    (["--n-up", "256"], "--n-up: the NAMM checkpoint"),  # the shipped one sets 512
    (["--length", "5"], "--length: must be at least 64"),
    (["--threads", "0"], "--threads: must be at least 1"),
    (["--ckpt", "no/such/folder"], "--ckpt no/such/folder: not a usable NAMM checkpoint"),
    (["--benchmark", "longbench", "--tasks", "trec"], "--benchmark longbench needs --data-dir"),
    (["--benchmark", "longbench", "--tasks", "trec", "--data-dir", "no/such/dir"], "--data-dir no/such/dir: folder not found"),
])
def test_bad_argument_is_one_line_before_the_model_loads(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.setattr(run, "load_model", _no_model)
    assert main(argv + ["--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "x").exists()


def test_a_checkpoint_of_the_wrong_size_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run, "load_model", _no_model)
    assert main(["--ckpt", _bad_namm(tmp_path), "--out-dir", str(tmp_path / "out")]) == 2
    assert "values, but the config describes a NAMM with" in capsys.readouterr().err


def test_a_prompt_longer_than_the_context_is_refused_not_scored_zero(tmp_path, fake_lm, capsys):
    out = tmp_path / "out"
    assert main(["--tasks", "passkey", "--policies", "full", "--n", "1", "--length", "9000",
                 "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "do not fit the model's context of 8192 tokens" in err and "--length" in err
    assert fake_lm == [] and not (out / "results.json").exists()
