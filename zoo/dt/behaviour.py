"""Train a linear behaviour policy with Augmented Random Search (ARS V2-t, Mania et al. 2018).

Every rollout made during training (perturbed policies and evaluations) is kept as the
"replay" of the policies seen during training; make_data.py turns it into a
medium-replay-style dataset, and the final policy into a medium-style one.

    python -m zoo.dt.behaviour --env hopper            # -> .cache/behaviour/hopper-{policy.npz,replay.hdf5}
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import time
from dataclasses import dataclass, asdict
from pathlib import Path

import numpy as np

from eval.rl.d4rl import write_d4rl_hdf5
from eval.rl.envs import canonical_env, make_env
from eval.rl.scores import normalized_score

from .episodes import run_episode
from .linear_policy import LinearPolicy, RunningStat

CACHE = Path(".cache/behaviour")


@dataclass
class ARSConfig:
    directions: int = 8          # N perturbation directions per iteration
    top: int = 4                 # b best directions used in the update
    step_size: float = 0.02      # alpha
    noise: float = 0.03          # nu
    alive_shift: float = 1.0     # subtracted from each training reward (ARS trick for hoppers)
    # Curriculum: once an evaluation reaches `shift_after_return` (e.g. the walker stands for
    # the whole episode), the shift becomes `late_alive_shift` so that only progress pays.
    late_alive_shift: float | None = None
    shift_after_return: float = 900.0
    # "medium" band: training stops at the first evaluation whose mean return reaches
    # band_low; the evaluated policy closest to the band's middle is kept (training can jump
    # over the band in one iteration).
    band_low: float = 1200.0
    band_high: float = 1700.0
    eval_every: int = 1
    eval_episodes: int = 3
    eval_action_noise: float = 0.1  # evaluate as make_data collects "medium" data
    max_iters: int = 400
    max_minutes: float = 12.0
    seed: int = 0


DEFAULTS = {
    # "medium" ~ 1/3 to 1/2 of D4RL's expert return (hopper 3234, walker2d 4592).
    "hopper": ARSConfig(directions=8, top=4, step_size=0.02, noise=0.03,
                        band_low=1200.0, band_high=1700.0),
    "walker2d": ARSConfig(directions=16, top=8, step_size=0.02, noise=0.03, alive_shift=0.0,
                          late_alive_shift=1.0, shift_after_return=900.0,
                          band_low=1600.0, band_high=2400.0, max_minutes=15.0),
}


def default_paths(env: str) -> tuple[Path, Path]:
    env = canonical_env(env)
    return CACHE / f"{env}-policy.npz", CACHE / f"{env}-replay.hdf5"


def train_ars(env_name: str, cfg: ARSConfig, log=print):
    """Returns (medium policy, replay episodes, history of evaluations)."""
    env = make_env(env_name)
    rng = np.random.default_rng(cfg.seed)
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    stat = RunningStat(obs_dim)
    theta = np.zeros((act_dim, obs_dim))
    policy = LinearPolicy(theta, stat.mean.copy(), stat.std.copy(),
                          float(env.action_space.low[0]), float(env.action_space.high[0]))
    replay, history = [], []
    best = (np.inf, None)  # (distance to the band's middle, policy)
    middle = 0.5 * (cfg.band_low + cfg.band_high)
    episode_seed = cfg.seed * 1_000_003
    shift = cfg.alive_shift
    t0 = time.time()
    for it in range(1, cfg.max_iters + 1):
        deltas = rng.standard_normal((cfg.directions, act_dim, obs_dim))
        rets = np.zeros((cfg.directions, 2))
        for k in range(cfg.directions):
            for j, sign in enumerate((1.0, -1.0)):
                w = theta + sign * cfg.noise * deltas[k]
                episode_seed += 1
                ep = run_episode(env, lambda o: policy.act(o, w), seed=episode_seed)
                replay.append(ep)
                stat.push_batch(ep["observations"])
                rets[k, j] = ep["return"] - shift * ep["length"]
        order = np.argsort(-rets.max(1))[: cfg.top]
        sigma = rets[order].std() + 1e-8
        theta = theta + cfg.step_size / (cfg.top * sigma) * np.einsum(
            "k,kij->ij", rets[order, 0] - rets[order, 1], deltas[order])
        policy.weights, policy.mean, policy.std = theta, stat.mean.copy(), stat.std.copy()
        if it % cfg.eval_every == 0:
            evals = []
            for _ in range(cfg.eval_episodes):
                episode_seed += 1
                ep = run_episode(env, policy.act, seed=episode_seed,
                                 action_noise=cfg.eval_action_noise, rng=rng)
                replay.append(ep)
                evals.append(ep["return"])
            mean = float(np.mean(evals))
            steps = sum(e["length"] for e in replay)
            history.append({"iter": it, "eval_return": mean, "eval_std": float(np.std(evals)),
                            "score": normalized_score(env_name, mean), "replay_steps": steps,
                            "minutes": (time.time() - t0) / 60})
            log(json.dumps(history[-1]))
            if abs(mean - middle) < best[0]:
                best = (abs(mean - middle), LinearPolicy(
                    theta.copy(), stat.mean.copy(), stat.std.copy(), policy.low, policy.high))
            if mean >= cfg.band_low:
                break
            if cfg.late_alive_shift is not None and mean >= cfg.shift_after_return \
                    and shift != cfg.late_alive_shift:
                shift = cfg.late_alive_shift
                log(f"iteration {it}: alive shift -> {shift}")
        if (time.time() - t0) / 60 > cfg.max_minutes:
            log(f"time budget of {cfg.max_minutes} min reached at iteration {it}")
            break
    env.close()
    return best[1], replay, history


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, choices=sorted(DEFAULTS))
    ap.add_argument("--policy-out", type=Path)
    ap.add_argument("--replay-out", type=Path)
    ap.add_argument("--max-minutes", type=float)
    ap.add_argument("--band", type=float, nargs=2, metavar=("LOW", "HIGH"),
                    help="return band of the 'medium' policy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    env = canonical_env(args.env)
    cfg = DEFAULTS[env]
    cfg.seed = args.seed
    if args.max_minutes is not None:
        cfg.max_minutes = args.max_minutes
    if args.band is not None:
        cfg.band_low, cfg.band_high = args.band
    pol_path, rep_path = default_paths(env)
    pol_path = args.policy_out or pol_path
    rep_path = args.replay_out or rep_path
    policy, replay, history = train_ars(env, cfg)
    info = {"env": env, "config": asdict(cfg), "history": history,
            "eval_return": min((h["eval_return"] for h in history),
                               key=lambda r: abs(r - 0.5 * (cfg.band_low + cfg.band_high)))}
    policy.save(pol_path, info)
    rets = np.array([e["return"] for e in replay])
    write_d4rl_hdf5(rep_path, replay, metadata={
        "env": env, "kind": "replay", "source": "ARS training rollouts",
        "mean_normalized_score": float(normalized_score(env, rets).mean())})
    print(f"policy -> {pol_path}; replay ({len(replay)} episodes, "
          f"{sum(e['length'] for e in replay)} steps, mean score "
          f"{normalized_score(env, rets).mean():.1f}) -> {rep_path}")


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
