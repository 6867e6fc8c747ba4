"""Read and write offline RL data in D4RL's HDF5 layout, and read local Minari datasets.

D4RL layout: flat arrays `observations [N, S]`, `actions [N, A]`, `rewards [N]`,
`terminals [N]`, `timeouts [N]` (optionally `next_observations`, `infos/*`, `metadata/*`).
An episode ends at a step whose `terminals` or `timeouts` flag is set. Steps after the last
such flag form a trailing partial episode: it is DROPPED by default (as D4RL's own
`sequence_dataset` does) and kept with `keep_partial=True`.

Episodes are dicts of numpy arrays: observations, actions, rewards, terminals, timeouts
(and next_observations when the file has it).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np

from core.errors import MissingFileError, UserError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL_KEYS = ("next_observations",)


class DatasetFormatError(UserError, KeyError):
    """A data file lacks a key it must have; the message names the file and the key."""

    def __str__(self):  # KeyError would quote the message
        return str(self.args[0])


def _require(group, key: str, path) -> h5py.Dataset:
    if key not in group:
        where = group.name if group.name != "/" else ""
        raise DatasetFormatError(f"{path}: missing key '{where.strip('/') + '/' if where else ''}{key}'")
    return group[key]


def _open_hdf5(path: Path) -> h5py.File:
    """h5py.File, with a truncated or non-HDF5 file reported as a DatasetFormatError naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetFormatError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None


def _read(dataset, path: Path, dtype=None) -> np.ndarray:
    try:
        return np.asarray(dataset[()], dtype=dtype)
    except OSError as err:  # data past the end of a truncated file
        raise DatasetFormatError(f"{path}: cannot read '{dataset.name}' (truncated or corrupt?): {err}") from None


def load_d4rl_arrays(path) -> dict[str, np.ndarray]:
    """The flat arrays of a D4RL HDF5 file (required keys plus next_observations if present)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such D4RL file")
    with _open_hdf5(path) as f:
        data = {k: _read(_require(f, k, path), path) for k in REQUIRED_KEYS}
        for k in OPTIONAL_KEYS:
            if k in f:
                data[k] = _read(f[k], path)
    n = len(data["observations"])
    for k, v in data.items():
        if len(v) != n:
            raise DatasetFormatError(f"{path}: key '{k}' has {len(v)} rows, observations has {n}")
    data["rewards"] = data["rewards"].reshape(n).astype(np.float32)
    data["terminals"] = data["terminals"].reshape(n).astype(bool)
    data["timeouts"] = data["timeouts"].reshape(n).astype(bool)
    return data


def split_episodes(data: dict[str, np.ndarray], keep_partial: bool = False) -> list[dict]:
    """Cut flat D4RL arrays into episodes at terminal or timeout flags."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])
    n = len(data["observations"])
    bounds = [(s, e + 1) for s, e in zip(np.r_[0, ends[:-1] + 1], ends)] if len(ends) else []
    last = ends[-1] + 1 if len(ends) else 0
    if keep_partial and last < n:
        bounds.append((last, n))
    return [{k: v[s:e] for k, v in data.items()} for s, e in bounds]


def load_d4rl_episodes(path, keep_partial: bool = False) -> list[dict]:
    """Episodes of a D4RL HDF5 file; see the module docstring for the trailing partial one."""
    return split_episodes(load_d4rl_arrays(path), keep_partial=keep_partial)


def episode_returns(episodes: list[dict]) -> np.ndarray:
    return np.array([float(ep["rewards"].sum()) for ep in episodes])


def write_d4rl_hdf5(path, episodes: list[dict], metadata: dict | None = None) -> Path:
    """Write episodes (dicts with observations, actions, rewards, terminals, timeouts and
    optionally next_observations) as one D4RL HDF5 file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cat = {}
    for k in REQUIRED_KEYS + OPTIONAL_KEYS:
        have = [k in ep for ep in episodes]
        if not any(have) and k in OPTIONAL_KEYS:
            continue
        if not all(have):
            raise KeyError(f"{path}: episode {have.index(False)} lacks key '{k}'")
        cat[k] = np.concatenate([np.asarray(ep[k]) for ep in episodes])
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in cat.items():
                dtype = bool if k in ("terminals", "timeouts") else np.float32
                f.create_dataset(k, data=v.astype(dtype), compression="gzip", compression_opts=4)
            for k, v in (metadata or {}).items():
                f.attrs[k] = v
        os.chmod(tmp, 0o644)  # mkstemp files are private
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------- Minari (read-only, h5py)

def minari_root() -> Path:
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def minari_data_file(dataset_id: str, root=None) -> Path:
    """<root>/<dataset_id>/data/main_data.hdf5, e.g. dataset_id 'mujoco/hopper/medium-v0'."""
    path = Path(root) if root is not None else minari_root()
    path = path / dataset_id / "data" / "main_data.hdf5"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Minari dataset '{dataset_id}' is not present locally "
                                "(set MINARI_DATASETS_PATH; nothing is downloaded)")
    return path


def load_minari_episodes(dataset_id: str, root=None) -> list[dict]:
    """Episodes of a locally stored Minari dataset, in the same dict layout as D4RL episodes.

    Minari stores one group `episode_<i>` per episode with `observations` of length T+1
    (initial and final observation), and `actions`, `rewards`, `terminations`,
    `truncations` of length T. Only array (Box) observations are supported.
    """
    path = minari_data_file(dataset_id, root)
    episodes = []
    with _open_hdf5(path) as f:
        names = sorted((k for k in f.keys() if k.startswith("episode_")),
                       key=lambda k: int(k.split("_", 1)[1]))
        for name in names:
            g = f[name]
            obs = _require(g, "observations", path)
            if isinstance(obs, h5py.Group):
                raise ValueError(f"{path}: '{name}/observations' is a dict space; not supported")
            obs = _read(obs, path, np.float32)
            act = _read(_require(g, "actions", path), path, np.float32)
            t = len(act)
            episodes.append({
                "observations": obs[:t],
                "next_observations": obs[1:t + 1],
                "actions": act,
                "rewards": np.asarray(_require(g, "rewards", path)[()], dtype=np.float32).reshape(t),
                "terminals": np.asarray(_require(g, "terminations", path)[()], dtype=bool).reshape(t),
                "timeouts": np.asarray(_require(g, "truncations", path)[()], dtype=bool).reshape(t),
            })
    return episodes


def load_episodes(source: str, keep_partial: bool = False) -> list[dict]:
    """Episodes from a D4RL HDF5 path, or 'minari:<dataset_id>' for a local Minari dataset."""
    if str(source).startswith("minari:"):
        return load_minari_episodes(str(source)[len("minari:"):])
    return load_d4rl_episodes(source, keep_partial=keep_partial)
