"""Run one episode of a policy in a gymnasium env and record it in D4RL's per-step layout."""
from __future__ import annotations

import numpy as np


def run_episode(env, act_fn, seed: int | None = None, record: bool = True,
                action_noise: float = 0.0, rng: np.random.Generator | None = None) -> dict:
    """Roll out act_fn(obs) -> action until termination or the env's time limit.

    Returns a dict with `return`, `length` and, when record is set, the arrays
    observations, next_observations, actions, rewards, terminals, timeouts. `timeouts` is set
    on the last step when the episode was truncated (time limit) rather than terminated.
    """
    obs, _ = env.reset(seed=seed)
    lo, hi = env.action_space.low, env.action_space.high
    rows = {k: [] for k in ("observations", "next_observations", "actions", "rewards",
                            "terminals", "timeouts")}
    total, steps = 0.0, 0
    while True:
        act = act_fn(obs)
        if action_noise > 0:
            act = np.clip(act + action_noise * rng.standard_normal(act.shape), lo, hi)
        nxt, rew, term, trunc, _ = env.step(act)
        total += float(rew)
        steps += 1
        if record:
            rows["observations"].append(obs)
            rows["next_observations"].append(nxt)
            rows["actions"].append(act)
            rows["rewards"].append(rew)
            rows["terminals"].append(bool(term))
            rows["timeouts"].append(bool(trunc and not term))
        obs = nxt
        if term or trunc:
            break
    out = {"return": total, "length": steps}
    if record:
        for k, v in rows.items():
            dtype = bool if k in ("terminals", "timeouts") else np.float32
            out[k] = np.asarray(v, dtype=dtype)
    return out
