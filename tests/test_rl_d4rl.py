"""D4RL/Minari readers and the normalised score (no network, files written under tmp_path)."""
import h5py
import numpy as np
import pytest

from eval.rl.d4rl import (DatasetFormatError, load_d4rl_episodes, load_episodes,
                          load_minari_episodes, write_d4rl_hdf5)
from eval.rl.scores import REF_SCORES, normalized_score


def _write_flat(path, terminals, timeouts, drop=None):
    n = len(terminals)
    arrays = {
        "observations": np.arange(n * 3, dtype=np.float32).reshape(n, 3),
        "actions": np.ones((n, 2), np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.array(terminals, bool),
        "timeouts": np.array(timeouts, bool),
    }
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            if k != drop:
                f[k] = v
    return arrays


def test_split_at_terminal_and_timeout(tmp_path):
    #          0  1  2  3  4  5  6  7  8
    term = [0, 0, 1, 0, 0, 0, 0, 0, 0]
    tout = [0, 0, 0, 0, 1, 0, 0, 0, 0]
    path = tmp_path / "toy.hdf5"
    _write_flat(path, term, tout)
    eps = load_d4rl_episodes(path)
    assert [len(e["rewards"]) for e in eps] == [3, 2]          # trailing 4 steps dropped
    assert eps[0]["terminals"][-1] and not eps[0]["timeouts"].any()
    assert eps[1]["timeouts"][-1] and not eps[1]["terminals"].any()
    np.testing.assert_array_equal(eps[1]["rewards"], [3, 4])
    np.testing.assert_array_equal(eps[1]["observations"][0], [9, 10, 11])
    kept = load_d4rl_episodes(path, keep_partial=True)
    assert [len(e["rewards"]) for e in kept] == [3, 2, 4]
    np.testing.assert_array_equal(kept[2]["rewards"], [5, 6, 7, 8])


def test_missing_key_names_file_and_key(tmp_path):
    path = tmp_path / "broken.hdf5"
    _write_flat(path, [0, 1], [0, 0], drop="timeouts")
    with pytest.raises(DatasetFormatError) as err:
        load_d4rl_episodes(path)
    assert "broken.hdf5" in str(err.value) and "timeouts" in str(err.value)
    assert isinstance(err.value, KeyError)


def test_write_roundtrip(tmp_path):
    eps = [{"observations": np.zeros((n, 4), np.float32), "actions": np.zeros((n, 2), np.float32),
            "rewards": np.full(n, 1.0, np.float32),
            "terminals": np.r_[np.zeros(n - 1, bool), term],
            "timeouts": np.r_[np.zeros(n - 1, bool), not term]}
           for n, term in [(5, True), (7, False)]]
    path = write_d4rl_hdf5(tmp_path / "sub" / "rt.hdf5", eps, metadata={"env": "hopper"})
    back = load_d4rl_episodes(path)
    assert [len(e["rewards"]) for e in back] == [5, 7]
    assert not list((tmp_path / "sub").glob("*.tmp"))
    with h5py.File(path) as f:
        assert f.attrs["env"] == "hopper"


def test_minari_reader(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    data = root / "mujoco" / "hopper" / "toy-v0" / "data"
    data.mkdir(parents=True)
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for i, (n, term) in enumerate([(3, True), (4, False)]):
            g = f.create_group(f"episode_{i}")
            g["observations"] = np.arange((n + 1) * 2, dtype=np.float32).reshape(n + 1, 2)
            g["actions"] = np.zeros((n, 1), np.float32)
            g["rewards"] = np.ones(n, np.float32)
            g["terminations"] = np.r_[np.zeros(n - 1, bool), term]
            g["truncations"] = np.r_[np.zeros(n - 1, bool), not term]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    eps = load_episodes("minari:mujoco/hopper/toy-v0")
    assert [len(e["observations"]) for e in eps] == [3, 4]
    np.testing.assert_array_equal(eps[0]["next_observations"][0], [2, 3])
    assert eps[0]["terminals"][-1] and eps[1]["timeouts"][-1]
    with pytest.raises(FileNotFoundError, match="absent-v0"):
        load_minari_episodes("absent-v0")


def test_minari_missing_key_names_file_and_key(tmp_path):
    data = tmp_path / "toy-v0" / "data"
    data.mkdir(parents=True)
    with h5py.File(data / "main_data.hdf5", "w") as f:
        g = f.create_group("episode_0")
        g["observations"] = np.zeros((3, 2), np.float32)
        g["actions"] = np.zeros((2, 1), np.float32)
    with pytest.raises(DatasetFormatError, match=r"main_data\.hdf5.*episode_0/rewards"):
        load_minari_episodes("toy-v0", root=tmp_path)


def test_normalized_score_constants():
    assert REF_SCORES == {"hopper": (-20.272305, 3234.3),
                          "halfcheetah": (-280.178953, 12135.0),
                          "walker2d": (1.629008, 4592.3),
                          "ant": (-325.6, 3879.7)}
    for env, (lo, hi) in REF_SCORES.items():
        assert normalized_score(env, lo) == pytest.approx(0.0)
        assert normalized_score(env, hi) == pytest.approx(100.0)
    assert normalized_score("hopper", 1607.0139) == pytest.approx(
        100 * (1607.0139 + 20.272305) / (3234.3 + 20.272305))
    assert normalized_score("Walker2d-v5", 2296.96) == pytest.approx(50.0, abs=1e-3)
    np.testing.assert_allclose(normalized_score("hopper-medium-v2", [-20.272305, 3234.3]), [0, 100])
