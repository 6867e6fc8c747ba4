"""Build "medium" and "medium-replay"-style datasets in D4RL's HDF5 layout.

    python -m zoo.dt.make_data --env hopper --out .cache/d4rl/hopper-medium-v2.hdf5
    python -m zoo.dt.make_data --env hopper --out .cache/d4rl/hopper-medium-replay-v2.hdf5

The kind (medium / medium-replay) is taken from --kind or from the output name. Both need the
ARS behaviour policy of zoo.dt.behaviour; it is trained first when its files are missing.
medium: episodes of the final ARS policy (the "medium" one) with Gaussian action noise.
medium-replay: every rollout made while training that policy.
Episodes last at most 1000 steps; `timeouts` is set on the step where the limit cuts one.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import sys
import json
from pathlib import Path

import numpy as np

from eval.rl.d4rl import load_d4rl_episodes, write_d4rl_hdf5, episode_returns
from eval.rl.envs import canonical_env, make_env
from eval.rl.scores import normalized_score

from . import behaviour
from .episodes import run_episode
from .linear_policy import LinearPolicy


def infer_kind(out: Path) -> str:
    name = out.name.lower()
    if "medium-replay" in name or "medium_replay" in name:
        return "medium-replay"
    if "medium" in name:
        return "medium"
    raise ValueError(f"{out}: cannot tell the kind from the name; pass --kind")


def ensure_behaviour(env: str, retrain: bool = False) -> tuple[Path, Path]:
    pol, rep = behaviour.default_paths(env)
    if retrain or not (pol.is_file() and rep.is_file()):
        behaviour.main(["--env", env, "--policy-out", str(pol), "--replay-out", str(rep)])
    return pol, rep


def collect(env_name: str, policy: LinearPolicy, steps: int, action_noise: float, seed: int):
    env = make_env(env_name)
    rng = np.random.default_rng(seed)
    episodes, total, i = [], 0, 0
    while total < steps:
        ep = run_episode(env, policy.act, seed=seed * 1_000_003 + i,
                         action_noise=action_noise, rng=rng)
        episodes.append(ep)
        total += ep["length"]
        i += 1
    env.close()
    return episodes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, choices=sorted(behaviour.DEFAULTS))
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--kind", choices=["medium", "medium-replay"])
    ap.add_argument("--steps", type=int, default=200_000, help="medium: environment steps to collect")
    ap.add_argument("--action-noise", type=float, default=None,
                    help="medium: Gaussian action noise std (default: the one the policy was "
                         "selected with, 0.1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--retrain", action="store_true", help="retrain the behaviour policy")
    args = ap.parse_args(argv)
    env = canonical_env(args.env)
    kind = args.kind or infer_kind(args.out)
    pol_path, rep_path = ensure_behaviour(env, args.retrain)
    if kind == "medium":
        policy = LinearPolicy.load(pol_path)
        if args.action_noise is None:
            args.action_noise = policy.info.get("config", {}).get("eval_action_noise", 0.1)
        episodes = collect(env, policy, args.steps, args.action_noise, args.seed)
        source = f"ARS linear policy {pol_path.name}, action noise {args.action_noise}"
    else:
        episodes = load_d4rl_episodes(rep_path, keep_partial=False)
        source = "ARS training rollouts (replay of the policies seen during training)"
    scores = normalized_score(env, episode_returns(episodes))
    summary = {"env": env, "kind": kind, "episodes": len(episodes),
               "steps": int(sum(len(e["rewards"]) for e in episodes)),
               "mean_return": float(episode_returns(episodes).mean()),
               "mean_normalized_score": float(scores.mean()),
               "std_normalized_score": float(scores.std()),
               "max_normalized_score": float(scores.max()), "source": source}
    write_d4rl_hdf5(args.out, episodes, metadata={k: v for k, v in summary.items()})
    print(json.dumps(summary))


if __name__ == "__main__":
    from core.errors import cli_main

    sys.exit(cli_main(main))
