"""D4RL normalised score: 100 * (return - random) / (expert - random)."""
from __future__ import annotations

import numpy as np

from .envs import canonical_env

# (random return, expert return) from D4RL's infos.py reference scores.
REF_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


def normalized_score(env: str, ret):
    """Normalised score of one return or an array of returns (same shape back)."""
    lo, hi = REF_SCORES[canonical_env(env)]
    out = 100.0 * (np.asarray(ret, dtype=np.float64) - lo) / (hi - lo)
    return float(out) if out.ndim == 0 else out
