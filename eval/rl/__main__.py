"""`python -m eval.rl --env hopper`: a Decision Transformer under every memory policy.

Protocols: `window` (the HF example: re-run the last K=20 steps, no cache), `full` (an
episode-long KV cache that keeps everything), and every memory policy on the episode cache
(`namm`, `h2o`, `l2`, `recency`, `tova`, `snapkv`, `random`). Prints a table (return and
D4RL-normalised score, mean ± std over episodes, cache fraction), writes results JSON and a plot.

    python -m eval.rl --env hopper --policies window,full,namm,h2o,l2 --episodes 10 [--ckpt NAMM_DIR]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from adapters.decision_transformer import EpisodeActor
from adapters.hf import attach
from core.policies import make_policy
from core.atomic import remove_stale_temporaries, write_json_atomic
from core.errors import UserError, cli_main
from eval.lm.checks import at_least, name_list, namm_checkpoint, policy_names
from eval.lm.resume_key import checkpoint_sha256
from eval.policy_results import PolicyResults, file_sha256
from eval.rl.dt_model import load_dt
from eval.rl.envs import canonical_env
from eval.plots import score_vs_cache
from eval.rl.rollout import evaluate, window_action

REPO = Path(__file__).resolve().parents[2]


def run_protocol(bundle, name, args):
    common = dict(episodes=args.episodes, batch_size=args.batch, seed=args.seed, max_steps=args.max_steps)
    if name == "window":
        result = evaluate(bundle, act_fn=window_action, **common)
        context_tokens = 3 * bundle.context
        fractions = [min(1.0, context_tokens / (3 * n)) for n in result.lengths]
        return result, fractions
    if name == "namm":
        policy = make_policy("namm", ckpt=args.ckpt or "zeros")
    elif name == "full":
        policy = make_policy("full")
    else:
        policy = make_policy(name, budget=args.budget, n_up=args.n_up)
    with attach(bundle.model, policy) as session:
        actor = EpisodeActor(session)
        result = evaluate(bundle, act_fn=actor, **common)
    return result, actor.episode_fractions()


def summarise(result, fractions) -> dict:
    return {**result.summary(), "cache_fraction": float(np.mean(fractions)) if fractions else None,
            "returns": [round(float(r), 2) for r in result.returns], "scores": [round(float(s), 2) for s in result.scores]}


def format_table(rows: dict) -> str:
    lines = [f"{'protocol':<10}{'return':>18}{'normalised':>16}{'cache':>7}{'steps/s':>9}"]
    for name, r in rows.items():
        lines.append(f"{name:<10}{r['return_mean']:>10.1f} ± {r['return_std']:<5.1f}"
                     f"{r['score_mean']:>9.1f} ± {r['score_std']:<4.1f}{r['cache_fraction']:>7.2f}"
                     f"{r['steps_per_second']:>9.0f}")
    return "\n".join(lines)


def plot(rows: dict, title: str, path: Path) -> None:
    points = {name: (r["cache_fraction"], r["score_mean"], r["score_std"]) for name, r in rows.items()}
    score_vs_cache(points, "D4RL normalised score", title, path,
                   xlabel="cache fraction at episode end (kept / processed tokens)")


def protocol_settings(args, name: str, env: str, dt_path: Path, ckpt_sha256: str) -> dict:
    """Everything that changes one protocol's result."""
    dt_files = sorted(p for p in dt_path.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"))
    settings = {"env": env, "dt_sha256": file_sha256(*dt_files), "protocol": name, "episodes": args.episodes,
                "batch": args.batch, "seed": args.seed, "max_steps": args.max_steps}
    if name == "namm":
        settings["ckpt_sha256"] = ckpt_sha256
    elif name not in ("window", "full"):
        settings.update(budget=args.budget, n_up=args.n_up)
    return settings


def validate_args(args) -> tuple[str, Path, list[str]]:
    """Every argument, before the DT loads: (env, DT folder, protocols)."""
    try:
        env = canonical_env(args.env)
    except ValueError as err:
        raise UserError(f"--env: {err}") from None
    names = name_list("--policies", args.policies, ("window", *policy_names()))
    if not 0.0 < args.budget <= 1.0:
        raise UserError(f"--budget: expected a fraction in (0, 1], got {args.budget}")
    for option, value in (("--n-up", args.n_up), ("--episodes", args.episodes), ("--batch", args.batch),
                          ("--max-steps", args.max_steps), ("--threads", args.threads)):
        at_least(option, value, 1)
    at_least("--seed", args.seed, 0)
    namm_checkpoint("--ckpt", args.ckpt)
    dt_path = Path(args.dt) if args.dt else REPO / "checkpoints" / f"dt-{env}"
    if not dt_path.is_dir():
        raise UserError(f"--dt: no Decision Transformer at {dt_path}; train one with `python -m zoo.dt.train "
                        f"--env {env}` or pass --dt")
    return env, dt_path, names


def main(argv=None) -> int:
    """A user error (argument or file) prints one line and returns 2."""
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.rl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--dt", default=None, help="DT checkpoint folder (default: checkpoints/dt-<env>)")
    parser.add_argument("--ckpt", default=None, help="NAMM checkpoint folder (default: the all-zero NAMM)")
    parser.add_argument("--policies", default="window,full,namm,h2o,l2,recency")
    parser.add_argument("--budget", type=float, default=0.5, help="baselines' cache budget (fraction)")
    parser.add_argument("--n-up", type=int, default=512, help="baselines' update interval in tokens")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10, help="environments stepped together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=None, help="default: runs/rl/<env>")
    args = parser.parse_args(argv)
    env, dt_path, names = validate_args(args)
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir or f"runs/rl/{env}")
    remove_stale_temporaries(out)
    bundle = load_dt(dt_path, env=env)
    stored, ckpt_sha256 = PolicyResults(out), checkpoint_sha256(args.ckpt)
    rows = {}
    results = {"env": env, "dt": str(dt_path.name), "ckpt": args.ckpt, "ckpt_sha256": ckpt_sha256,
               "budget": args.budget, "episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps,
               "protocols": rows}
    for name in tqdm(names, desc="eval.rl", unit="protocol"):
        settings = protocol_settings(args, name, env, dt_path, ckpt_sha256)
        rows[name] = stored.load(name, settings)
        if rows[name] is None:  # not done before with these settings
            result, fractions = run_protocol(bundle, name, args)
            rows[name] = summarise(result, fractions)
            stored.save(name, settings, rows[name])
        results["pending"] = names[len(rows):]
        write_json_atomic(out / "results.json", results)  # what is done so far, after every protocol
    del results["pending"]
    write_json_atomic(out / "results.json", results)
    plot(rows, f"DT on {env}: {args.episodes} episodes, baselines at {args.budget:.0%}", out / "score_vs_cache.png")
    print(format_table(rows))
    print(f"\nwrote {out / 'results.json'} and {out / 'score_vs_cache.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
