"""A linear policy a = clip(W @ ((s - mean) / std)) with running observation statistics."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


class RunningStat:
    """Welford mean/variance over observation vectors, mergeable across batches."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)

    def push_batch(self, xs: np.ndarray):
        xs = np.asarray(xs, dtype=np.float64).reshape(-1, len(self.mean))
        if not len(xs):
            return
        n_b, mean_b = len(xs), xs.mean(0)
        m2_b = ((xs - mean_b) ** 2).sum(0)
        delta = mean_b - self.mean
        tot = self.n + n_b
        self.mean = self.mean + delta * n_b / tot
        self.m2 = self.m2 + m2_b + delta ** 2 * self.n * n_b / tot
        self.n = tot

    @property
    def std(self) -> np.ndarray:
        if self.n < 2:
            return np.ones_like(self.mean)
        std = np.sqrt(self.m2 / (self.n - 1))
        return np.where(std < 1e-8, 1.0, std)


class LinearPolicy:
    def __init__(self, weights: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 low: float = -1.0, high: float = 1.0):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.low, self.high = low, high

    def act(self, obs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = self.weights if weights is None else weights
        return np.clip(w @ ((obs - self.mean) / self.std), self.low, self.high)

    def save(self, path, info: dict | None = None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, weights=self.weights, mean=self.mean, std=self.std,
                     bounds=np.array([self.low, self.high]),
                     info=np.array(json.dumps(info or {})))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    @classmethod
    def load(cls, path) -> "LinearPolicy":
        with np.load(path) as z:
            for key in ("weights", "mean", "std", "bounds"):
                if key not in z:
                    raise KeyError(f"{path}: missing key '{key}'")
            pol = cls(z["weights"], z["mean"], z["std"], *z["bounds"])
            pol.info = json.loads(str(z["info"])) if "info" in z else {}
        return pol
