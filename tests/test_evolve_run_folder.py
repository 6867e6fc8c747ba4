"""The run folder: one writer at a time, --resume keeps the objective, a killed run's temporaries go."""
import subprocess
import sys
import time

import pytest
import yaml

from core.errors import UserError
from core.lock import FolderLock
from evolve.run import main

from conftest import REPO, TOY_TWO_STAGES

TOY = TOY_TWO_STAGES


def _config(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY)
    return str(path)


def _run(tmp_path, *extra):
    return main(["--config", _config(tmp_path), "--out", str(tmp_path / "run"), "--no-progress", *extra])


def _hold_lock(folder):
    code = ("import sys, time; from core.lock import FolderLock; FolderLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_on_the_same_run_folder_is_refused_until_the_first_dies(tmp_path, capsys):
    holder = _hold_lock(tmp_path / "run")
    try:
        assert _run(tmp_path) == 2
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}" in err and str(tmp_path / "run" / ".lock") in err
        assert not (tmp_path / "run" / "state.json").exists()
    finally:
        holder.kill()  # kill -9: the lock file stays, with the dead owner's pid
        holder.wait()
    assert str(holder.pid) in (tmp_path / "run" / ".lock").read_text()
    assert _run(tmp_path) == 0  # a stale lock is taken over
    assert (tmp_path / "run" / "state.json").is_file()


def test_the_lock_is_exclusive_within_a_process_too(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(UserError, match="in use by process"):
            FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path) as again:
        assert again.fd is not None


def _three_generations(tmp_path):
    assert _run(tmp_path, "stages.1.generations=1") == 0  # stage one (2) is finished, stage two has done 1


@pytest.mark.parametrize("override, words", [
    ("cache_weight=0.5", "field 'cache_weight': the run was made with 0.0, --resume asks for 0.5"),
    ("toy_target=0.5", "field 'toy_target'"),
    ("popsize=8", "field 'popsize'"),
    ("stages.1.tasks=[a]", "field 'stages[1].tasks'"),
    ("stages.0.generations=1", "field 'stages[0].generations': stage 'one' is finished with 2 generations"),
    ("stages.0.generations=3", "field 'stages[0].generations': stage 'one' is finished with 2 generations"),
])
def test_resume_that_changes_the_objective_is_refused_and_config_yaml_kept(tmp_path, capsys, override, words):
    _three_generations(tmp_path)
    before = (tmp_path / "run" / "config.yaml").read_text()
    capsys.readouterr()
    assert _run(tmp_path, "--resume", override) == 2
    assert words in capsys.readouterr().err
    assert (tmp_path / "run" / "config.yaml").read_text() == before


@pytest.mark.parametrize("made_exact", [False, True])
def test_resume_keeps_the_attention_path_the_run_was_made_on(tmp_path, capsys, made_exact):
    assert _run(tmp_path, "stages.1.generations=1", f"exact={str(made_exact).lower()}") == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["exact"] is made_exact
    capsys.readouterr()
    assert _run(tmp_path, "--resume", f"exact={str(not made_exact).lower()}") == 2
    assert (f"field 'exact': the run was made with {made_exact}, --resume asks for {not made_exact}; pass "
            f"exact={str(made_exact).lower()} to continue it" in capsys.readouterr().err)
    assert _run(tmp_path, "--resume", f"exact={str(made_exact).lower()}", "stages.1.generations=2") == 0


def test_a_run_folder_from_before_the_exact_field_resumes_on_the_exact_path(tmp_path, capsys):
    """Its config.yaml has no 'exact': the run was made on the exact path, and continues on it."""
    _three_generations(tmp_path)
    path = tmp_path / "run" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    del saved["exact"]
    path.write_text(yaml.safe_dump(saved, sort_keys=False))
    capsys.readouterr()
    assert _run(tmp_path, "--resume") == 2  # the config file's default is the shared path
    assert "field 'exact': the run was made with True, --resume asks for False" in capsys.readouterr().err
    out = ["--out", str(tmp_path / "run"), "--no-progress", "--resume"]
    assert main([*out, "stages.1.generations=2"]) == 0  # the run folder's own config.yaml: exact as it was made
    assert yaml.safe_load(path.read_text())["exact"] is True


def test_resume_may_lengthen_the_run_and_change_threads(tmp_path):
    _three_generations(tmp_path)
    assert _run(tmp_path, "--resume", "stages.1.generations=3", "threads=1") == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["stages"][1]["generations"] == 3 and saved["threads"] == 1


def test_a_killed_runs_temporaries_are_removed_on_start(tmp_path):
    _three_generations(tmp_path)
    run = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [run / f"state.json.{dead.pid}-k2j4x9_a.tmp", run / "latest" / f"model.safetensors.{dead.pid}-abcdefgh.tmp",
                 run / "log.jsonl.q8w7e6r5.tmp"]  # the last: named as before the pid was in the name
    for path in leftovers:
        path.write_text("half")
    staging = run / f".best.{dead.pid}-zzzzzzzz.tmp"
    staging.mkdir()
    (staging / "config.json").write_text("{")
    unrelated = run / "notes.tmp"
    unrelated.write_text("mine")
    assert _run(tmp_path, "--resume", "stages.1.generations=2") == 0
    assert not any(p.exists() for p in leftovers) and not staging.exists()
    assert unrelated.read_text() == "mine"


def test_a_fresh_run_into_an_existing_run_is_one_line(tmp_path, capsys):
    _three_generations(tmp_path)
    capsys.readouterr()
    assert _run(tmp_path, "stages.1.generations=1") == 2
    err = capsys.readouterr().err
    assert "already holds a run (state.json); pass --resume" in err and err.count("\n") == 1
