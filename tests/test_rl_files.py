"""A truncated or non-HDF5 data file is a one-line error naming the file."""
import subprocess
import sys

import numpy as np
import pytest

from core.errors import UserError
from eval.rl.d4rl import load_d4rl_arrays, write_d4rl_hdf5

from conftest import REPO


def _episode(n=50):
    rng = np.random.default_rng(0)
    return {"observations": rng.normal(size=(n, 3)).astype(np.float32), "actions": rng.normal(size=(n, 2)).astype(np.float32),
            "rewards": np.ones(n, np.float32), "terminals": np.eye(1, n, n - 1, dtype=bool)[0],
            "timeouts": np.zeros(n, bool)}


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_hdf5_names_the_file(tmp_path, cut):
    path = write_d4rl_hdf5(tmp_path / "d.hdf5", [_episode(2000)])
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(UserError, match=f"{path}: .*(truncated or corrupt)"):
        load_d4rl_arrays(path)


def test_a_text_file_posing_as_hdf5_is_one_line_from_the_cli(tmp_path):
    bad = tmp_path / "data.hdf5"
    bad.write_text("not hdf5")
    done = subprocess.run([sys.executable, "-m", "zoo.dt.train", "--env", "hopper", "--data", str(bad),
                           "--out", str(tmp_path / "dt")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: {bad}: not a readable HDF5 file" in done.stderr and "Traceback" not in done.stderr
