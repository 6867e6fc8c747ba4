"""Every command line prints a project error as one line (no traceback) and exits with status 2."""
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.parametrize("argv, words", [
    (["eval.demo", "--policies", "full,../x"], "--policies: unknown name '../x'"),
    (["eval.demo", "--n", "0"], "--n: must be at least 1"),
    (["eval.lm", "--budget", "2"], "--budget: expected a fraction in (0, 1]"),
    (["eval.rl", "--max-steps", "0"], "--max-steps: must be at least 1"),
    (["eval.video", "--limit", "0"], "--limit: must be at least 1"),
    (["evolve.run", "--config", "no/such.yaml"], "no/such.yaml: config file not found"),
    (["evolve.export", "no/such", "out"], "no/such"),
    (["eval.rl.evaluate_dt", "--ckpt", "no/such"], "no/such"),
])
def test_a_user_error_is_one_line_with_status_2(tmp_path, argv, words):
    done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr[-3000:]


@pytest.mark.parametrize("name, text, words", [("config.json", "[]", "config.json: expected a JSON object, got list"),
                                               ("dt_meta.json", "{oops", "dt_meta.json: not valid JSON (line 1")])
def test_a_dt_json_file_that_is_not_an_object_is_named(tmp_path, name, text, words):
    import shutil

    from core.errors import UserError
    from eval.rl.dt_model import load_dt

    folder = tmp_path / "dt"
    shutil.copytree(REPO / "checkpoints" / "dt-hopper", folder)
    (folder / name).write_text(text)
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        load_dt(folder)
