"""Ctrl-C while a command is still importing torch and transformers (or loading its model): one line,
status 130, no traceback, whenever it lands."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("delay", [0.05, 0.4, 1.5])
def test_ctrl_c_at_any_point_of_the_start_is_one_line(tmp_path, delay):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "eval.lm", "--tasks", "passkey", "--policies", "full", "--n", "1",
                             "--length", "200", "--threads", "1", "--out-dir", str(tmp_path / "run")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the command finished before the signal came")
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("eval.lm:", "Loading"))]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("interrupted:"), err
