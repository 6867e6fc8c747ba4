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

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.policies import Schedule
from core.atomic import remove_stale_temporaries, write_json_atomic, write_text_atomic
from core.errors import UserError, cli_main, on_interrupt
from core.lock import FolderLock
from eval import inputs, policy_setup
from eval.lm.checks import at_least, name_list, policy_names, refuse_replaying
from eval.lm.resume_key import checkpoint_sha256
from eval.policy_results import NUMBER, OPTIONAL_NUMBER, PolicyResults, file_sha256
from eval.rl.envs import MAX_EPISODE_STEPS, canonical_env
from eval.plots import ForestRow, budget_sweep, forest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SCHEDULE = Schedule(512, at_prompt_end=False)  # where no NAMM checkpoint or option sets it
MAX_BATCH = 1024
# What a stored protocol result must hold (a rerun reads these; see eval.policy_results)
RESULT_FIELDS = {"return_mean": NUMBER, "return_std": NUMBER, "score_mean": NUMBER, "score_std": NUMBER,
                 "cache_fraction": OPTIONAL_NUMBER, "steps_per_second": NUMBER}
PROMPT_END_NOTE = "each step's forward ends a prompt here, so 'at prompt end' means after every environment step"


def attach(*args, **kwargs):
    """adapters.hf's, imported when a policy runs (transformers takes seconds to import: a bad argument is
    refused before that)."""
    from adapters.hf import attach as real
    return real(*args, **kwargs)


def load_dt(*args, **kwargs):
    from eval.rl.dt_model import load_dt as real
    return real(*args, **kwargs)


def run_protocol(bundle, name, args, setup, budgets=None):
    """(result, each episode's cache fraction at its end, and right after its last update). `budgets`: one
    per episode, each episode then run on its own; else the run's budget."""
    from eval.rl.rollout import concatenate, evaluate, window_action

    common = dict(episodes=args.episodes, batch_size=args.batch, seed=args.seed, max_steps=args.max_steps)
    if name == "window":
        result = evaluate(bundle, act_fn=window_action, **common)
        context_tokens = 3 * bundle.context
        fractions = [min(1.0, context_tokens / (3 * n)) for n in result.lengths]
        return result, fractions, None
    if budgets is None:
        return _episode_cache(bundle, setup.build(name), common, setup.exact)
    parts = [_episode_cache(bundle, setup.build(name, budget),
                            {**common, "episodes": 1, "batch_size": 1, "seed": args.seed + i}, setup.exact)
             for i, budget in enumerate(budgets)]
    return (concatenate([p[0] for p in parts]), [f for p in parts for f in p[1]],
            [f for p in parts for f in p[2]])


def _episode_cache(bundle, policy, common, exact: bool = False):
    from adapters.decision_transformer import EpisodeActor
    from eval.rl.rollout import evaluate

    with attach(bundle.model, policy, exact=exact) as session:
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
    fractions = rows["namm"].get("fractions_at_update")
    if not isinstance(fractions, list) or not all(isinstance(f, (int, float)) and not isinstance(f, bool)
                                                  for f in fractions) or len(fractions) != _episode_count(rows):
        raise UserError("--budget matched: the stored namm result has no usable 'fractions_at_update' (one number "
                        "per episode); delete its file under policies/ to recompute it")
    return [policy_setup.matched_budget(f) for f in fractions]


def _episode_count(rows: dict) -> int:
    returns = rows["namm"].get("returns")
    return len(returns) if isinstance(returns, list) else -1


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
    """A forest: a row per protocol, its mean D4RL score with +-1 s.d. over episodes, its cache fraction at
    episode end beside."""
    forest([ForestRow(name, r["score_mean"], (r["score_mean"] - r["score_std"], r["score_mean"] + r["score_std"]),
                      r["cache_fraction"], r.get("budget")) for name, r in rows.items()],
           "D4RL normalised score (mean, +-1 s.d. over episodes)", title, path,
           reference=rows["full"]["score_mean"] if "full" in rows else None)


def protocol_settings(args, name: str, env: str, dt_path: Path, ckpt_sha256: str | None, schedule,
                      budgets=None, namm_budget: float | None = None) -> dict:
    """Everything that changes one protocol's result."""
    dt_files = sorted(p for p in dt_path.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin"))
    settings = {"env": env, "dt_sha256": file_sha256(*dt_files), "protocol": name, "episodes": args.episodes,
                "batch": args.batch, "seed": args.seed, "max_steps": args.max_steps}
    settings.update(policy_setup.rule_settings(name))
    settings.update(policy_setup.path_settings(name, getattr(args, "exact", False)))
    if name not in ("window", "full"):
        settings.update(n_up=schedule.n_up, update_at_prompt_end=schedule.at_prompt_end)
    if name == "namm":
        settings.update(policy_setup.namm_settings(ckpt_sha256, namm_budget))
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
    inputs.at_most("--batch", args.batch, MAX_BATCH, "environments stepped together, each a MuJoCo simulation")
    dt_path = Path(args.dt) if args.dt else REPO / "checkpoints" / f"dt-{env}"
    if not dt_path.is_dir():
        raise UserError(f"--dt: no Decision Transformer at {dt_path}; train one with `python -m zoo.dt.train "
                        f"--env {env}` or pass --dt")
    inputs.decision_transformer("--dt", dt_path, env)
    inputs.at_most("--max-steps", args.max_steps, MAX_EPISODE_STEPS, "the environments end every episode there")
    out = inputs.output_folder("--out-dir", args.out_dir or f"runs/rl/{env}")
    PolicyResults(out, RESULT_FIELDS).check_all()  # results of earlier runs that this one may reuse
    return env, dt_path, setup


def main(argv=None) -> int:
    """A user error (argument or file) prints one line and returns 2."""
    return cli_main(_main, argv)


def build_parser() -> argparse.ArgumentParser:
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
    return parser


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    budgets = policy_setup.budgets_of(args.budget)
    runs = [(b, policy_setup.one_budget(args, b)) for b in budgets]
    checked = [validate_args(a) for _, a in runs]  # every input, before the DT loads or anything is written
    env, dt_path, _ = checked[0]
    out = Path(args.out_dir or f"runs/rl/{env}")
    with FolderLock(out, "eval.rl output folder"):  # one writer at a time, as evolve.run's run folders
        if len(budgets) == 1:
            return _run(args, env, dt_path, checked[0][2], out)
        sweep = {}
        for (b, one), (_, _, setup) in zip(runs, checked):  # results shared: window, full, the NAMM run once
            _run(one, env, dt_path, setup, out, out / f"budget-{b}")
            sweep[b] = json.loads((out / f"budget-{b}" / "results.json").read_text())["protocols"]
        write_sweep(sweep, f"DT on {env}: {args.episodes} episodes", out)
        return 0


def write_sweep(sweep: dict[str, dict], title: str, out: Path) -> None:
    """sweep.md (a row per protocol, its D4RL score and cache at each budget) and sweep.png (score against
    budget, a line per baseline; window, full and a threshold NAMM as points or the dashed line)."""
    budgets = list(sweep)
    names = list(dict.fromkeys(n for rows in sweep.values() for n in rows))
    lines = [f"# {title}", "", "| protocol | " + " | ".join(f"budget {float(b):g}: score ± s.d. / cache" for b in budgets)
             + " |", "|---|" + "---|" * len(budgets)]
    plotted, points, full = {}, {}, None
    for name in names:
        cells = []
        for b in budgets:
            r = sweep[b][name]
            cells.append(f"{r['score_mean']:.1f} ± {r['score_std']:.1f} / {r['cache_fraction']:.2f}")
            band = (r["score_mean"] - r["score_std"], r["score_mean"] + r["score_std"])
            if name == "full":
                full = r["score_mean"]
            elif r.get("budget") is not None:
                plotted.setdefault(name, []).append((float(b), r["score_mean"], band))
            else:
                points[name] = (r["cache_fraction"], r["score_mean"], band)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    write_text_atomic(out / "sweep.md", "\n".join(lines) + "\n")
    budget_sweep(plotted, "D4RL normalised score (± 1 s.d. over episodes)", title, out / "sweep.png", full=full,
                 points=points)
    print("\n".join(lines))
    print(f"\nwrote {out / 'sweep.md'} and {out / 'sweep.png'}")


def _run(args, env: str, dt_path: Path, setup, out: Path, results_dir: Path | None = None) -> int:
    """One budget's run: each protocol's result stored in `out`, the results and plot in `results_dir`."""
    results_dir = out if results_dir is None else results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    names = setup.names
    torch.set_num_threads(args.threads)
    remove_stale_temporaries(out)
    on_interrupt(f"each finished policy's result is in {out / 'policies'}; rerun the same command to continue")
    bundle = load_dt(dt_path, env=env)
    stored = PolicyResults(out, RESULT_FIELDS)
    ckpt_sha256 = checkpoint_sha256(setup.ckpt) if "namm" in names else None
    rows = {}
    results = {"env": env, "dt": str(dt_path.name), **setup.as_json(), "ckpt_sha256": ckpt_sha256,
               "episodes": args.episodes, "seed": args.seed, "max_steps": args.max_steps, "protocols": rows}
    if setup.schedule.at_prompt_end:
        results["schedule"]["note"] = PROMPT_END_NOTE
    for name in tqdm(names, desc="eval.rl", unit="protocol"):
        budgets = protocol_budgets(setup, name, rows)
        settings = protocol_settings(args, name, env, dt_path, ckpt_sha256, setup.schedule, budgets,
                                     setup.namm_budget)
        rows[name] = stored.load(name, settings)
        if rows[name] is None:  # not done before with these settings
            result, fractions, at_update = run_protocol(bundle, name, args, setup, budgets)
            rows[name] = summarise(result, fractions, at_update)
            if budgets is not None:
                rows[name].update(budget=float(np.mean(budgets)), budgets=budgets)
            elif name not in ("window", "full", "namm"):
                rows[name]["budget"] = setup.budget
            elif name == "namm" and setup.namm_budget is not None:
                rows[name]["budget"] = setup.namm_budget
            stored.save(name, settings, rows[name])
        results["pending"] = names[len(rows):]
        write_json_atomic(results_dir / "results.json", results)  # what is done so far, after every protocol
    del results["pending"]
    write_json_atomic(results_dir / "results.json", results)
    baselines = "baselines matched to the NAMM per episode" if setup.matched else f"baselines at {setup.budget:.0%}"
    plot(rows, f"DT on {env}: {args.episodes} episodes, {baselines}", results_dir / "score_vs_cache.png")
    header = setup.header() + (f"\n({PROMPT_END_NOTE})" if setup.schedule.at_prompt_end else "")
    print(format_table(rows, header))
    print(f"\nwrote {results_dir / 'results.json'} and {results_dir / 'score_vs_cache.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
