"""`python -m eval.transfer --ckpt DIR [--quick]`: one NAMM checkpoint, unchanged, on language tasks it
never saw, on two control tasks and on video, each against every baseline, in one report. A top-k NAMM
(NAMM-X) is compared at fixed budgets (`--budget 0.5,0.25` by default, 0.5 with `--quick`: a table per
budget, every policy keeping that fraction); a threshold NAMM, whose cache size is its own, at its cache fraction
(`--budget matched`: every baseline gets the NAMM's fraction on the same item).

Writes OUT/report.md (a table per evaluation), OUT/report.json, OUT/transfer.png (a forest per
evaluation: normalised score with its interval per policy, cache fraction beside) and OUT/kept.png (the NAMM's kept fraction per layer
and the age of the tokens it keeps, per modality). Each evaluation is the CLI a user would run (its
command is in the report) with its own folder under OUT, so a rerun reuses what is done.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from core.atomic import write_json_atomic, write_text_atomic
from core.errors import UserError, cli_main, on_interrupt

REPO = Path(__file__).resolve().parents[2]
HELDOUT_TASKS = "kv_retrieval,fewshot_classification,phonebook"
BASELINES = "h2o,l2,tova,snapkv,recency,random,expected_attention,adakv(snapkv)"
TOPK_BUDGETS = "0.5,0.25"  # kvpress's fixed compression ratios 0.5 and 0.75
QUICK_TOPK_BUDGET = "0.5"  # --quick is a smoke test: one budget
VIDEO_MODEL = "llava-video-smollm2"  # shipped in checkpoints/; answers in words (eval.video --answer-format)
VIDEO_FRAMES = 64  # about 1.7k-token prompts: every policy evicts at its own cadence


@dataclass
class Step:
    name: str  # the panel's title
    module: str  # eval.lm | eval.rl | eval.video
    argv: list[str]
    out: Path

    @property
    def modality(self) -> str:
        return {"eval.lm": "language", "eval.rl": "control", "eval.video": "video"}[self.module]

    def command(self) -> str:
        return "python -m " + self.module + " " + " ".join(shlex.quote(a) for a in self.argv)


def plan(args) -> list[Step]:
    out, ckpt, threads = Path(args.out_dir), args.ckpt, str(args.threads)
    quick = args.quick
    n = str(getattr(args, "n", None) or (2 if quick else 30))
    n_qa = str(getattr(args, "n_query_agnostic", None) or n)
    lengths = (getattr(args, "lengths", None) or ("1000" if quick else "1000,2000")).split(",")
    episodes = str(getattr(args, "episodes", None) or (2 if quick else 30))
    max_steps = "300" if quick else "1000"
    video = ["--model", VIDEO_MODEL, "--frames", str(VIDEO_FRAMES), "--answer-format", "words",
             "--limit", "1" if quick else "20"]
    policies = f"full,namm,{BASELINES}"
    budget = getattr(args, "budget", None) or "matched"
    exact = ["--exact"] if getattr(args, "exact", False) else []
    steps = []
    for length in lengths:
        for protocol in (getattr(args, "protocols", None) or "whole-prompt,query-agnostic").split(","):
            if protocol == "query-agnostic" and length != lengths[0]:
                continue
            label = "whole prompt" if protocol == "whole-prompt" else "query-agnostic (question uncompressed)"
            key = f"lm-{length}-{protocol}"
            steps.append(Step(f"language (held-out tasks), {length} tokens, {label}", "eval.lm",
                              ["--tasks", HELDOUT_TASKS, "--policies", policies, "--budget", budget, "--ckpt", ckpt,
                               "--n", n if protocol == "whole-prompt" else n_qa, "--length", length,
                               "--protocol", protocol, "--threads", threads, *exact, "--out-dir", str(out / key)],
                              out / key))
    for env in ("hopper", "walker2d"):
        steps.append(Step(f"control: Decision Transformer on {env}", "eval.rl",
                          ["--env", env, "--policies", policies, "--budget", budget, "--ckpt", ckpt,
                           "--episodes", episodes, "--batch", episodes, "--max-steps", max_steps,
                           "--threads", threads, *exact, "--out-dir", str(out / f"rl-{env}")], out / f"rl-{env}"))
    steps.append(Step(f"video: SmolLM2 LLaVA-NeXT-Video, {VIDEO_FRAMES} frames (built-in generated videos)", "eval.video",
                      ["--policies", policies, "--budget", budget, "--ckpt", ckpt, *video,
                       "--threads", threads, *exact, "--out-dir", str(out / "video")], out / "video"))
    only = getattr(args, "only", None)
    if only:
        keys = only.split(",")
        unknown = [k for k in keys if k not in {s.out.name for s in steps}]
        if unknown:
            raise UserError(f"--only: unknown {', '.join(unknown)}; choose from {', '.join(s.out.name for s in steps)}")
        steps = [s for s in steps if s.out.name in keys]
    return steps


def check_step(step: Step) -> None:
    """Every input of one evaluation, as its CLI checks them before its model loads (nothing is written); a
    budget list is checked budget by budget, as the CLI does before its sweep."""
    from eval.policy_setup import budgets_of, one_budget

    if step.module == "eval.lm":
        from eval.lm.__main__ import build_parser
        from eval.lm.run import validate
        args = build_parser().parse_args(["run", *step.argv])
    elif step.module == "eval.rl":
        from eval.rl.__main__ import build_parser, validate_args as validate
        args = build_parser().parse_args(step.argv)
    else:
        from eval.video.__main__ import build_parser, validate_args as validate
        args = build_parser().parse_args(step.argv)
    for budget in budgets_of(args.budget):
        validate(one_budget(args, budget))


def step_budgets(step: Step) -> list[str]:
    from eval.policy_setup import budgets_of

    return budgets_of(step.argv[step.argv.index("--budget") + 1])


def run_step(step: Step) -> list[tuple[str, dict]]:
    """(budget, results) of one evaluation: one pair, or one per budget of a sweep (each in budget-<b>/)."""
    if step.module == "eval.lm":
        from eval.lm.__main__ import main
    elif step.module == "eval.rl":
        from eval.rl.__main__ import main
    else:
        from eval.video.__main__ import main
    rc = main(step.argv)
    if rc != 0:
        raise UserError(f"{step.name}: `{step.command()}` exited with status {rc}")
    budgets = step_budgets(step)
    if len(budgets) == 1:
        return [(budgets[0], json.loads((step.out / "results.json").read_text()))]
    return [(b, json.loads((step.out / f"budget-{b}" / "results.json").read_text())) for b in budgets]


def panel_for(step: Step, budget: str, results: dict, sweep: bool):
    from eval.transfer import report

    maker = {"language": report.lm_panel, "control": report.rl_panel, "video": report.video_panel}[step.modality]
    return maker(f"{step.name}, budget {budget}" if sweep else step.name, results)


def default_budget(ckpt: str, quick: bool = False) -> str:
    """Fixed budgets for a top-k NAMM (it obeys them like every baseline; one with --quick), matched for a
    threshold NAMM."""
    if ckpt == "zeros":
        return "matched"
    config = json.loads((Path(ckpt) / "config.json").read_text())
    if config.get("selection", "threshold") != "topk":
        return "matched"
    return QUICK_TOPK_BUDGET if quick else TOPK_BUDGETS


def analyse(args, out: Path) -> dict:
    """The NAMM's kept fraction per layer and ages of kept tokens on a few items of each modality."""
    from adapters.loading import load_model
    from core.registry import make_policy
    from eval.lm import builtin_tasks
    from eval.rl.dt_model import load_dt
    from eval.transfer import analysis

    stats, exact = {}, getattr(args, "exact", False)
    model, tokenizer = load_model("smollm2")
    items = [it for task in HELDOUT_TASKS.split(",") for it in builtin_tasks.make_items(task, 1, 1000, 0, tokenizer)]
    stats["language"] = analysis.record_lm(model, tokenizer, make_policy("namm", ckpt=args.ckpt),
                                           [builtin_tasks.render(it, tokenizer) for it in items], exact=exact)
    bundle = load_dt(REPO / "checkpoints" / "dt-hopper", env="hopper")
    stats["control (hopper)"] = analysis.record_dt(bundle, make_policy("namm", ckpt=args.ckpt), episodes=1,
                                                   exact=exact,
                                                   max_steps=300 if args.quick else 1000)
    stats["video"] = _video_stats(args, analysis)
    analysis.plot_kept(stats, out / "kept.png", f"what the NAMM keeps ({Path(args.ckpt).name})")
    return {name: s.to_json() for name, s in stats.items()}


def _video_stats(args, analysis):
    import torch

    from core.registry import make_policy
    from eval.video import mlvu
    from eval.video.__main__ import builtin_split, first_per_task
    from eval.video.models import load_video_chat

    chat = load_video_chat(str(REPO / "checkpoints" / VIDEO_MODEL), torch.float32, "cpu")
    items = first_per_task(mlvu.load(builtin_split(100), tasks=None), 1)
    inputs = [(mlvu.load_frames(it, VIDEO_FRAMES), chat.mlvu_words_prompt(it)) for it in items]
    return analysis.record_video(chat, make_policy("namm", ckpt=args.ckpt), inputs,
                                 exact=getattr(args, "exact", False))


def validate(args) -> list[Step]:
    """The report's own options, then every evaluation's inputs as its CLI checks them: a bad value stops the
    report before anything runs, not minutes in. Returns the planned evaluations."""
    from eval import inputs
    from eval.lm.checks import at_least, name_list

    if args.threads < 1:
        raise UserError(f"--threads: expected at least 1, got {args.threads}")
    if args.ckpt != "zeros" and not Path(args.ckpt).exists() and (REPO / args.ckpt).exists():
        args.ckpt = str(REPO / args.ckpt)  # the default, run from another folder
    if args.ckpt != "zeros" and not (Path(args.ckpt) / "config.json").is_file():
        raise UserError(f"--ckpt {args.ckpt}: not a NAMM checkpoint folder (no config.json)")
    args.budget = args.budget or default_budget(args.ckpt, args.quick)
    from eval.policy_setup import budgets_of

    budgets_of(args.budget)  # a fraction, a list of fractions or matched; each evaluation checks the rest
    args.out_dir = args.out_dir or ("runs/transfer-quick" if args.quick else "runs/transfer")
    inputs.output_folder("--out-dir", args.out_dir)
    for option in ("n", "n_query_agnostic", "episodes"):
        at_least(f"--{option.replace('_', '-')}", getattr(args, option), 1)
    from eval.rl.__main__ import MAX_BATCH

    inputs.at_most("--episodes", args.episodes, MAX_BATCH, "the control evaluations step every episode together")
    name_list("--protocols", args.protocols, ("whole-prompt", "query-agnostic"))
    if args.lengths is not None:
        inputs.int_list("--lengths", args.lengths, 64)  # each evaluation checks them against its model too
    steps = plan(args)
    for step in steps:
        check_step(step)
    return steps


def main(argv=None) -> int:
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    from eval.policy_setup import add_exact_argument

    parser = argparse.ArgumentParser(prog="python -m eval.transfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default="checkpoints/namm-x-smollm2",
                        help="NAMM checkpoint folder (default: the shipped NAMM-X; checkpoints/namm-smollm2 is the "
                             "paper's architecture)")
    parser.add_argument("--budget", default=None,
                        help="fixed budgets (a fraction or a list, e.g. 0.5,0.25) or 'matched'; default: 0.5,0.25 "
                             "for a top-k NAMM (0.5 with --quick), matched for a threshold NAMM")
    parser.add_argument("--quick", action="store_true",
                        help="a few items, episodes and videos per evaluation (minutes): a smoke test, not a result")
    parser.add_argument("--threads", type=int, default=2)
    add_exact_argument(parser)
    parser.add_argument("--out-dir", default=None, help="default: runs/transfer[-quick]")
    parser.add_argument("--skip-analysis", action="store_true", help="no kept-token analysis plots")
    parser.add_argument("--lengths", default=None, help="language prompt lengths (default 1000,2000; quick 1000)")
    parser.add_argument("--n", type=int, default=None, help="items per language task (default 30; quick 2)")
    parser.add_argument("--n-query-agnostic", type=int, default=None,
                        help="items per task under the query-agnostic protocol (default: --n)")
    parser.add_argument("--protocols", default="whole-prompt,query-agnostic",
                        help="language protocols: whole-prompt (every length) and query-agnostic (the first length)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per control task (default 30; quick 2)")
    parser.add_argument("--only", default=None,
                        help="run only these evaluations (folder names, e.g. lm-1000-whole-prompt,rl-hopper): to "
                             "spread them over processes; a last run without --only reuses them and writes the report")
    args = parser.parse_args(argv)
    steps = validate(args)  # every evaluation's inputs, before the first one runs
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    on_interrupt(f"each evaluation keeps what it finished in its folder under {out}; rerun the same command to "
                 f"continue from there")
    panels, timings = [], {}
    for step in tqdm(steps, desc="eval.transfer", unit="evaluation"):
        started = time.perf_counter()
        runs = run_step(step)
        panels += [panel_for(step, budget, results, len(runs) > 1) for budget, results in runs]
        timings[step.name] = round(time.perf_counter() - started, 1)
    if args.only:
        print(f"ran {', '.join(s.out.name for s in steps)}; run again without --only for the report")
        return 0
    analysis_json = None if args.skip_analysis else analyse(args, out)

    from eval.transfer import report

    header = [f"# Transfer report: {args.ckpt}{' (quick: a smoke test, too few items to compare)' if args.quick else ''}",
              "",
              (f"Every policy, the NAMM included, keeps the same fixed fraction of the processed tokens at each "
               f"update (`--budget {args.budget}`: a table per budget)" if args.budget != "matched" else
               "Every baseline gets the NAMM's cache fraction on the same items (`--budget matched`)")
              + " and the NAMM's update schedule. Normalised: score / the full cache's on the same items, with a "
              "paired 95% bootstrap interval. kvzip is not a row: it needs a whole context before its question and "
              "one compression per context (eval.lm's query-agnostic protocol with --n-up above the context).",
              "",
              "Commands:", "", *[f"    {s.command()}" for s in steps]]
    write_text_atomic(out / "report.md", report.markdown(panels, header))
    write_json_atomic(out / "report.json", {"ckpt": args.ckpt, "quick": args.quick, "exact": args.exact,
                                            "commands": [s.command() for s in steps],
                                            "seconds": timings, "panels": [p.to_json() for p in panels],
                                            "kept": analysis_json})
    report.plot_panels(panels, out / "transfer.png", f"{args.ckpt}: one memory, three modalities")
    print(report.markdown(panels, []))
    print(f"wrote {out / 'report.md'}, {out / 'report.json'}, {out / 'transfer.png'}"
          + ("" if args.skip_analysis else f" and {out / 'kept.png'}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
