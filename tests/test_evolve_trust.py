"""Resuming runs no code from the run folder: the optimiser state is safetensors, and an older run's
pickle is loaded only with --trust-run-dir. state.json is checked field by field."""
import hashlib
import json
import pickle

import numpy as np
import pytest

from core.errors import UserError
from evolve.checkpoint import STATE_FILE
from evolve.config import parse_config
from evolve.loop import evolve
from evolve.optimizer import CMAES
from conftest import TOY_TWO_STAGES
from evolve.run import main

TOY = TOY_TWO_STAGES


class Killed(Exception):
    pass


def _kill_after(generation):
    def hook(g, _optimizer):
        if g == generation:
            raise Killed()
    return hook


def _killed_run(tmp_path, generation=1):
    run = tmp_path / "run"
    with pytest.raises(Killed):
        evolve(parse_config(TOY, "toy.yaml"), run, progress=False, on_generation=_kill_after(generation))
    return run


def _to_old_format(run):
    """Rewrite a run folder as the previous version left it: cma's pickle in optimizer-GGGGGG.pkl."""
    state = json.loads((run / STATE_FILE).read_text())
    new = run / state["optimizer_file"]
    blob = CMAES.from_file(new).to_bytes()  # the very bytes the previous version wrote
    old = run / new.name.replace(".safetensors", ".pkl")
    old.write_bytes(blob)
    new.unlink()
    state.update(optimizer_file=old.name, optimizer_sha256=hashlib.sha256(blob).hexdigest())
    (run / STATE_FILE).write_text(json.dumps(state))


def test_new_runs_store_no_pickle_and_resume_without_unpickling(tmp_path, monkeypatch):
    full = evolve(parse_config(TOY, "toy.yaml"), tmp_path / "full", progress=False)
    run = _killed_run(tmp_path)
    assert not list(run.glob("*.pkl")) and (run / "optimizer-000001.safetensors").is_file()

    def no_unpickling(*a, **k):
        raise AssertionError("resume unpickled a file")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    resumed = evolve(parse_config(TOY, "toy.yaml"), run, resume=True, progress=False)
    assert np.array_equal(full.mean, resumed.mean) and full.sigma == resumed.sigma


def test_an_old_pickle_run_resumes_only_with_trust_run_dir(tmp_path, capsys):
    full = evolve(parse_config(TOY, "toy.yaml"), tmp_path / "full", progress=False)
    run = _killed_run(tmp_path)
    _to_old_format(run)
    config = tmp_path / "toy.yaml"
    config.write_text(TOY)
    argv = ["--config", str(config), "--out", str(run), "--resume", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "optimizer-000001.pkl" in err and "--trust-run-dir" in err and "Traceback" not in err
    assert main(argv + ["--trust-run-dir"]) == 0
    state = json.loads((run / STATE_FILE).read_text())
    assert state["next_generation"] == 4 and state["optimizer_file"] == "optimizer-000003.pkl"
    assert np.array_equal(CMAES.from_file(run / state["optimizer_file"], trust_pickle=True).mean, full.mean)


def test_a_tampered_replay_state_is_refused(tmp_path):
    run = _killed_run(tmp_path)
    from safetensors import safe_open
    from safetensors.numpy import load, save

    path = run / "optimizer-000001.safetensors"
    data = load(path.read_bytes())
    meta = safe_open(str(path), framework="numpy").metadata()
    data["told"] = np.ascontiguousarray(data["told"][:, ::-1])  # another ranking of the members
    path.write_bytes(save(data, metadata=meta))
    with pytest.raises(UserError, match="does not reach the stored mean"):
        CMAES.from_file(path)


@pytest.mark.parametrize("field, value, words", [
    ("next_generation", -5, "field 'next_generation' is -5, must be at least 1"),
    ("next_generation", 7, "field 'optimizer_file' is 'optimizer-000001.safetensors', expected optimizer-000006"),
    ("next_generation", "2", "field 'next_generation' has type str, expected int"),
    ("optimizer_file", "../../elsewhere.pkl", "field 'optimizer_file' is '../../elsewhere.pkl'"),
    ("torch_rng", None, "missing field 'torch_rng'"),
    ("optimizer_sha256", None, "missing field 'optimizer_sha256'"),
])
def test_bad_state_json_is_refused_and_names_the_field(tmp_path, field, value, words):
    run = _killed_run(tmp_path)
    state = json.loads((run / STATE_FILE).read_text())
    log_before = (run / "log.jsonl").read_text()
    if value is None:
        del state[field]
    else:
        state[field] = value
    (run / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(UserError, match=f"state.json: {words}".replace("(", r"\(").replace(")", r"\)")):
        evolve(parse_config(TOY, "toy.yaml"), run, resume=True, progress=False)
    assert (run / "log.jsonl").read_text() == log_before  # the history is untouched


def test_state_json_that_is_not_an_object_is_named(tmp_path, capsys):
    run = _killed_run(tmp_path)
    (run / STATE_FILE).write_text("[]")
    config = tmp_path / "toy.yaml"
    config.write_text(TOY)
    assert main(["--config", str(config), "--out", str(run), "--resume", "--no-progress"]) == 2
    assert f"{run / STATE_FILE}: expected a JSON object, got list" in capsys.readouterr().err
