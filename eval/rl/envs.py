"""Names of the MuJoCo control tasks used by the RL part of NAMM-X.

Short names ("hopper", "walker2d") map to the gymnasium environment ids that stand in
for D4RL's v3 MuJoCo environments, and to D4RL's normalisation references.
"""
from __future__ import annotations

import gymnasium as gym

GYM_IDS = {
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
    "halfcheetah": "HalfCheetah-v5",
    "ant": "Ant-v5",
}

MAX_EPISODE_STEPS = 1000


def canonical_env(name: str) -> str:
    """Return the short name ("hopper") for "hopper", "Hopper-v5", "hopper-medium-v2", "walker"."""
    low = name.lower()
    if low.startswith("walker"):
        return "walker2d"
    for short in GYM_IDS:
        if low.startswith(short):
            return short
    raise ValueError(f"unknown environment {name!r}; known: {sorted(GYM_IDS)}")


def gym_id(name: str) -> str:
    return GYM_IDS[canonical_env(name)]


def make_env(name: str) -> gym.Env:
    """A gymnasium env with the D4RL episode limit of 1000 steps."""
    return gym.make(gym_id(name), max_episode_steps=MAX_EPISODE_STEPS)
