"""`python -m eval.rl --env hopper`: a Decision Transformer under every memory policy.

Protocols: `window` (the HF example: re-run the last K=20 steps, no cache), `full` (an
episode-long KV cache that keeps everything), and every memory policy on the episode cache
(`namm`, `h2o`, `l2`, `recency`, `tova`, `snapkv`, `random`). Prints a table (return and
D4RL-normalised score, mean ± std over episodes, cache fraction), writes results JSON and a plot.

Every policy updates on one schedule (the NAMM checkpoint's where its config.json sets it; see
eval.policy_setup). A DT step's tokens are one forward, which counts as a prompt end, so "at prompt end"
means after every step. With `--budget matched` the NAMM runs first and each baseline runs every episode
on its own, with the NAMM's cache fraction in the episode of the same seed (right after its last update)
as its budget.

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
from core.policies import Schedule
from core.atomic import remove_stale_temporaries, write_json_atomic
from core.errors import UserError, cli_main
from eval import policy_setup
from eval.lm.checks import at_least, name_list, policy_names, refuse_replaying
from eval.lm.resume_key import checkpoint_sha256
from eval.policy_results import PolicyResults, file_sha256
from eval.rl.dt_model import load_dt
from eval.rl.envs import canonical_env
from eval.plots import score_vs_cache
from eval.rl.rollout import concatenate, evaluate, window_action

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SCHEDULE = Schedule(512, at_prompt_end=False)  # where no NAMM checkpoint or option sets it
PROMPT_END_NOTE = "each step's forward ends a prompt here, so 'at prompt end' means after every environment step"


def run_protocol(bundle, name, args, setup, budgets=None):
    """(result, each episode's cache fraction at its end, and right after its last update). `budgets`: one
    per episode, each episode then run on its own; else the run's budget."""
    common = dict(episodes=args.episodes, batch_size=args.batch, seed=args.seed, max_steps=args.max_steps)
    if name == "window":
        result = evaluate(bundle, act_fn=window_action, **common)
        context_tokens = 3 * bundle.context
        fractions = [min(1.0, context_tokens / (3 * n)) for n in result.lengths]
        return result, fractions, None
    if budgets is None:
        return _episode_cache(bundle, setup.build(name), common)
    parts = [_episode_cache(bundle, setup.build(name, budget),
                            {**common, "episodes": 1, "batch_size": 1, "seed": args.seed + i})
             for i, budget in enumerate(budgets)]
    return (concatenate([p[0] for p in parts]), [f for p in parts for f in p[1]],
            [f for p in parts for f in p[2]])


def _episode_cache(bundle, policy, common):
    with attach(bundle.model, policy) as session:
        actor = EpisodeActor(session)
        result = evaluate(bundle, act_fn=actor, **common)
    return result, actor.episode_fractions(), actor.episode_fractions_at_update()


def summarise(result, fractions, at_update=None) -> dict:
    row = {**result.summary(), "cache_fraction": float(np.mean(fractions)) if fractions else None,
           "returns": [round(float(r), 2) for r in result.returns], "scores": [round(float(s), 2) for s in result.scores],
           "lengths": [int(n) for n in result.lengths], "cache_fractions": [float(f) for f in fractions]}
    if at_update is not None:
        row["fractions_at_update"] = [float(f) for f in at_update]
    return row


def protocol_budgets(setup, name: str, rows: dict) -> list[float] | None:
    """Matched: each episode's budget, the NAMM's fraction right after its last update in that episode."""
    if not setup.matched or name in ("window", "full", "namm"):
        return None
    return [policy_setup.matched_budget(f) for f in rows["namm"]["fractions_at_update"]]


def format_table(rows: dict, header: str = "") -> str:
    lines = [header] if header else []
    lines.append(f"{'protocol':<10}{'return':>18}{'normalised':>16}{'cache':>7}{'budget':>8}{'steps/s':>9}")
    for name, r in rows.items():
        budget = f"{r['budget']:.2f}" if r.get("budget") is not None else "-"
        lines.append(f"{name:<10}{r['return_mean']:>10.1f} ± {r['return_std']:<5.1f}"
                     f"{r['score_mean']:>9.1f} ± {r['score_std']:<4.1f}{r['cache_fraction']:>7.2f}{budget:>8}"
                     f"{r['steps_per_second']:>9.0f}")
    return "\n".join(lines)


def plot(rows: dict, title: str, path: Path) -> None:
    points = {name: (r["cache_fraction"], r["score_mean"], r["score_std"]) for name, r in rows.items()}
    score_vs_cache(points, "D4RL normalised score", title, path,
                   xlabel="cache fraction at episode end (kept / processed tokens)")


def protocol_settings(args, name: str, env: str, dt_path: Path, ckpt_sha256: str | None, schedule,
                      budgets=None) -> dict:
    """Everything that changes one protocol's result."""
    dt_files = sorted(p for p in dt_path.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"))
    settings = {"env": env, "dt_sha256": file_sha256(*dt_files), "protocol": name, "episodes": args.episodes,
                "batch": args.batch, "seed": args.seed, "max_steps": args.max_steps}
    settings.update(policy_setup.rule_settings(name))
    if name not in ("window", "full"):
        settings.update(n_up=schedule.n_up, update_at_prompt_end=schedule.at_prompt_end)
    if name == "namm":
        settings["ckpt_sha256"] = ckpt_sha256
    elif budgets is not None:
        settings["budgets"] = budgets
    elif name not in ("window", "full"):
        settings["budget"] = float(args.budget)
    return settings


def validate_args(args) -> tuple[str, Path, policy_setup.PolicySetup]:
    """Every argument, before the DT loads: (env, DT folder, the policies' setup)."""
    try:
        env = canonical_env(args.env)
    except ValueError as err:
        raise UserError(f"--env: {err}") from None
    names = name_list("--policies", args.policies, ("window", *policy_names()))
    refuse_replaying(names, "the Decision Transformer's cache is updated step by step")
    for option, value in (("--episodes", args.episodes), ("--batch", args.batch),
                          ("--max-steps", args.max_steps), ("--threads", args.threads)):
        at_least(option, value, 1)
    at_least("--seed", args.seed, 0)
    setup = policy_setup.resolve(args, names, DEFAULT_SCHEDULE, unit="episode")
    dt_path = Path(args.dt) if args.dt else REPO / "checkpoints" / f"dt-{env}"
    if not dt_path.is_dir():
        raise UserError(f"--dt: no Decision Transformer at {dt_path}; train one with `python -m zoo.dt.train "
                        f"--env {env}` or pass --dt")
    return env, dt_path, setup


def main(argv=None) -> int:
    """A user error (argument or file) prints one line and returns 2."""
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.rl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="hopper")
    parser.add_argument("--dt", default=None, help="DT checkpoint folder (default: checkpoints/dt-<env>)")
    parser.add_argument("--policies", default="window,full,namm,h2o,l2,recency")
    policy_setup.add_arguments(parser, DEFAULT_SCHEDULE)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=10, help="environments stepped together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=None, help="default: runs/rl/<env>")
    args = parser.parse_args(argv)
    env, dt_path, setup = validate_args(args)
    names = setup.names
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir or f"runs/rl/{env}")
    remove_stale_temporaries(out)
    bundle = load_dt(dt_path, env=env)
    stored = PolicyResults(out)
    ckpt_sha256 = checkpoint_sha256(setup.ckpt) if "namm" in names else None
    rows = {}
    results = {"env": env, "dt": str(dt_path.name), **setup.as_json(), "ckpt_sha256": ckpt_sha256,
               "episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps, "protocols": rows}
    if setup.schedule.at_prompt_end:
        results["schedule"]["note"] = PROMPT_END_NOTE
    for name in tqdm(names, desc="eval.rl", unit="protocol"):
        budgets = protocol_budgets(setup, name, rows)
        settings = protocol_settings(args, name, env, dt_path, ckpt_sha256, setup.schedule, budgets)
        rows[name] = stored.load(name, settings)
        if rows[name] is None:  # not done before with these settings
            result, fractions, at_update = run_protocol(bundle, name, args, setup, budgets)
            rows[name] = summarise(result, fractions, at_update)
            if budgets is not None:
                rows[name].update(budget=float(np.mean(budgets)), budgets=budgets)
            elif name not in ("window", "full", "namm"):
                rows[name]["budget"] = setup.budget
            stored.save(name, settings, rows[name])
        results["pending"] = names[len(rows):]
        write_json_atomic(out / "results.json", results)  # what is done so far, after every protocol
    del results["pending"]
    write_json_atomic(out / "results.json", results)
    baselines = "baselines matched to the NAMM per episode" if setup.matched else f"baselines at {setup.budget:.0%}"
    plot(rows, f"DT on {env}: {args.episodes} episodes, {baselines}", out / "score_vs_cache.png")
    header = setup.header() + (f"\n({PROMPT_END_NOTE})" if setup.schedule.at_prompt_end else "")
    print(format_table(rows, header))
    print(f"\nwrote {out / 'results.json'} and {out / 'score_vs_cache.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
