"""95% bootstrap intervals for the normalised score: items are resampled within each task, the same
draw for a policy and the full cache (paired), and the mean over tasks of score / full-cache score is
recomputed on every draw."""
from __future__ import annotations

import numpy as np


def normalised_interval(policy: dict[str, list[float]], full: dict[str, list[float]], tasks, draws: int = 2000,
                        seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """(low, high) of the normalised score over `tasks`, or None when no task has a full-cache reference.

    `policy` and `full` map a task to per-item scores in the same item order."""
    tasks = [t for t in tasks if t in policy and t in full and len(policy[t]) == len(full[t]) and len(full[t])]
    if not tasks:
        return None
    rng = np.random.default_rng(seed)
    ratios = np.zeros((draws, 0))
    columns = []
    for t in tasks:
        p, f = np.asarray(policy[t], float), np.asarray(full[t], float)
        idx = rng.integers(0, len(f), size=(draws, len(f)))
        fm = f[idx].mean(axis=1)
        pm = p[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            columns.append(np.where(fm > 0, pm / np.where(fm > 0, fm, 1.0), np.nan))
    ratios = np.stack(columns, axis=1)
    values = np.nanmean(np.where(np.isnan(ratios).all(axis=1, keepdims=True), 0.0, ratios), axis=1)
    valid = ~np.isnan(ratios).all(axis=1)
    if not valid.any():
        return None
    tail = (1 - level) / 2
    low, high = np.quantile(values[valid], [tail, 1 - tail])
    return float(low), float(high)


def difference_interval(policy: dict[str, list[float]], other: dict[str, list[float]], full: dict[str, list[float]],
                        tasks, draws: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """(low, high) of normalised(policy) - normalised(other): both scored on the same items, so every draw
    resamples the items once and uses them for the two policies and the full cache (paired)."""
    tasks = [t for t in tasks if all(t in d and len(d[t]) == len(full.get(t, [])) for d in (policy, other))
             and len(full[t])]
    if not tasks:
        return None
    rng = np.random.default_rng(seed)
    gaps = []
    for t in tasks:
        p, o, f = (np.asarray(d[t], float) for d in (policy, other, full))
        idx = rng.integers(0, len(f), size=(draws, len(f)))
        fm = f[idx].mean(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            gaps.append(np.where(fm > 0, (p[idx].mean(axis=1) - o[idx].mean(axis=1)) / np.where(fm > 0, fm, 1.0),
                                 np.nan))
    stacked = np.stack(gaps, axis=1)
    valid = ~np.isnan(stacked).all(axis=1)
    if not valid.any():
        return None
    values = np.nanmean(stacked[valid], axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
