"""`python -m eval.video`: a LLaVA-NeXT-Video model under every memory policy on a video benchmark.

    python -m eval.video [--ckpt NAMM_DIR] [--benchmark builtin|mlvu|longvideobench] [--data-dir D]
                         [--model M] [--frames 64] [--policies full,namm,h2o,l2] [--limit N]
                         [--answer-format words|letter]

`builtin` is the generated MLVU-format benchmark (its test split is generated on first use under
.cache/video_builtin-eval). MLVU and the builtin benchmark print per-task accuracy and M-Avg per
policy; LongVideoBench prints accuracy overall and by duration group (and writes the breakdown by
question category to the results JSON). Every table carries the mean cache fraction; the results JSON
and a forest plot (a row per policy, its cache fraction beside) are written. The default model is the one that separates
memory policies: checkpoints/llava-video-smollm2 (SmolLM2-135M reading ~1.7k-token video prompts; see
zoo/video) at 64 frames, answered in words. `--model llava-video-tiny --frames 32 --answer-format letter`
is the small smoke-test model (fast; it answers only first_last above chance). `--model` also takes a
Hugging Face LLaVA-NeXT-Video folder or name (e.g. llava-hf/LLaVA-NeXT-Video-7B-hf where its weights exist).
`python -m eval.video.budgets` puts runs at several `--budget` in one table.

`--answer-format letter` (the default for LongVideoBench) is MLVU's protocol: options listed, the reply after
"Best option:(" must be the answer's letter. `words` (the default for MLVU and builtin) asks the question
without options and the greedy reply after "Answer:" must start with the answer's text (any other reply is
wrong): a cloze form for models too small to map options to letters, such as zoo/video's SmolLM2 LLaVA.

Every policy updates on one schedule (the NAMM checkpoint's where its config.json sets it; see
eval.policy_setup): with n_up 512 and no update at the prompt's end, a prompt shorter than 512 tokens is
never evicted by any policy. With `--budget matched` the NAMM runs first and each baseline gets, on every
item, the NAMM's cache fraction on that item right after its last update.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from adapters.loading import DTYPES
from core.policies import Schedule
from core.atomic import remove_stale_temporaries, write_json_atomic
from core.errors import UserError, cli_main, on_interrupt
from core.lock import FolderLock
from eval import inputs, policy_setup
from eval.lm.checks import REPLAYING, at_least, name_list, policy_names
from eval.lm.resume_key import checkpoint_sha256
from eval.policy_results import NUMBER, OBJECT, OPTIONAL_NUMBER, PolicyResults, model_identity
from eval.video import longvideobench as lvb
from eval.video import mlvu
from eval.video.answering import run_lvb, run_mlvu
from eval.plots import ForestRow, forest
from eval.video.frames import DecodeStats

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / ".cache" / "video_builtin-eval"
DEFAULT_SCHEDULE = Schedule(512, at_prompt_end=True)  # where no NAMM checkpoint or option sets it
MAX_FRAMES = 1024  # frames decoded and held per item
MAX_N_TEST = 5000  # generated videos per question type (written under .cache)
MAX_NEW_TOKENS = 4096
# What a stored policy result must hold (a rerun reads these; see eval.policy_results)
COMMON_FIELDS = {"cache_fraction": OPTIONAL_NUMBER, "seconds_per_item": NUMBER, "decode_frames_per_second": NUMBER}
RESULT_FIELDS = {"mlvu": {**COMMON_FIELDS, "per_task": OBJECT, "m_avg": NUMBER},
                 "longvideobench": {**COMMON_FIELDS, "acc": NUMBER, "by_duration_group": OBJECT,
                                    "num_missing": ((int,), "a whole number")}}


def attach(*args, **kwargs):
    """adapters.hf's, imported when a policy runs (transformers takes seconds to import: a bad argument is
    refused before that)."""
    from adapters.hf import attach as real
    return real(*args, **kwargs)


def builtin_split(n_test: int) -> Path:
    """The generated test videos, `n_test` per question type, made once per size (a split of another size
    is never reused for this one)."""
    folder = BUILTIN / f"n{n_test}"
    test = folder / "test"
    if not (test / "json").is_dir():
        from zoo.video import make_builtin

        make_builtin.main(["--out", str(folder), "--n-train", "0", "--n-test", str(n_test)])
    return test


def shipped_model(model: str) -> str:
    """A name of a model shipped in the repository's checkpoints/ (when no such folder is in the working
    directory) stands for that folder."""
    shipped = REPO / "checkpoints" / model
    if not Path(model).exists() and "/" not in model and shipped.is_dir():
        return str(shipped)
    return model


def first_per_task(items, limit: int):
    kept, counts = [], {}
    for item in items:
        if counts.get(item.task, 0) < limit:
            kept.append(item)
            counts[item.task] = counts.get(item.task, 0) + 1
    return kept


def item_budgets(setup, name: str, results: dict) -> dict[str, float] | None:
    """Matched: each item's budget, the NAMM's fraction right after its last update on that item."""
    if not setup.matched or name in ("full", "namm"):
        return None
    fractions = results["namm"].get("fractions_at_update")
    if not isinstance(fractions, dict) or not all(isinstance(f, (int, float)) and not isinstance(f, bool)
                                                  for f in fractions.values()):
        raise UserError("--budget matched: the stored namm result has no usable 'fractions_at_update' (a number "
                        "per item); delete its file under policies/ to recompute it")
    return {item: policy_setup.matched_budget(f) for item, f in fractions.items()}


def evaluate_policy(chat, items, name, args, setup, budgets=None):
    """One policy on every item. `budgets` (matched): a baseline's budget per item id; else the run's."""
    fractions, at_update, replay_seconds = {}, {}, {}
    replaying = name in REPLAYING
    query_agnostic = getattr(args, "protocol", "whole-prompt") == "query-agnostic"
    own_path = replaying or query_agnostic  # one compression when a context ends, on greedy_generate
    policy = setup.build(name) if budgets is None and not own_path else None
    stats = DecodeStats()

    def answer(frames, prompt, item):
        if budgets is not None and item.id not in budgets:
            raise UserError(f"--budget matched: the NAMM has no cache fraction for item {item.id} (its video was "
                            "missing then); rerun the namm policy")
        if own_path:  # the video compressed before the question (query-agnostic), or kvzip at the prompt's end
            one = setup.build(name, None if budgets is None else budgets[item.id])
            text, gen = chat.reply_compressed(frames, prompt, args.max_new_tokens, one, setup.exact, setup.schedule.n_up,
                                              context="video" if query_agnostic else "prompt")
            fractions[item.id], at_update[item.id] = gen.cache_fraction, gen.fraction_at_update
            replay_seconds[item.id] = gen.replay_seconds
            return text
        with attach(chat.model, policy or setup.build(name, budgets[item.id]), exact=setup.exact) as session:
            text = chat.reply(frames, prompt, args.max_new_tokens)
            fractions[item.id] = session.cache.fraction() if session.cache is not None else 1.0
            at_update[item.id] = session.cache.fraction_at_update() if session.cache is not None else 1.0
        return text

    started = time.perf_counter()
    log = lambda m: tqdm.write(m)  # noqa: E731
    progress = tqdm(items, desc=name, unit="item", leave=False)
    if args.benchmark == "longvideobench":
        rows = run_lvb(progress, lambda frames, parts, item: answer(frames, chat.lvb_prompt(parts), item), args.frames,
                       args.subtitles, args.seed, stats, log=log)
        summary = lvb.summarize(rows)
    else:
        prompt = chat.mlvu_words_prompt if args.answer_format == "words" else chat.mlvu_prompt
        rows = run_mlvu(progress, lambda frames, item: answer(frames, prompt(item), item), args.frames, stats,
                        log=log, answer_format=args.answer_format)
        summary = mlvu.summarize(rows)
    summary.update(cache_fraction=sum(fractions.values()) / len(fractions) if fractions else None,
                   seconds_per_item=(time.perf_counter() - started) / max(1, len(items)),
                   decode_frames_per_second=round(stats.frames_per_second, 1),
                   cache_fractions=fractions, fractions_at_update=at_update)
    if replaying:  # its extra cost, inside seconds_per_item
        summary["replay_seconds_per_item"] = sum(replay_seconds.values()) / max(1, len(replay_seconds))
    if budgets is not None:
        given = [budgets[i] for i in fractions]
        summary.update(budget=sum(given) / len(given) if given else None, budgets={i: budgets[i] for i in fractions})
    elif name not in ("full", "namm"):
        summary["budget"] = setup.budget
    elif name == "namm" and setup.namm_budget is not None:
        summary["budget"] = setup.namm_budget
    return summary


def _header(results: dict) -> list[str]:
    lines = [results["schedule"]["description"], f"baselines' budget: {results['budget_mode']}"]
    if results.get("protocol") == "query-agnostic":
        lines.append("protocol: query-agnostic (the prompt up to its last video token compressed when it ends, the "
                     "question read after it)")
    if results.get("answer_format", "letter") != "letter":
        lines.append(f"answer format: {results['answer_format']} (question without options, reply matched to the option texts)")
    return lines


def _budget(summary: dict) -> str:
    return f"{summary['budget']:.2f}" if summary.get("budget") is not None else "-"


def format_lvb_table(results: dict) -> str:
    groups = sorted({g for s in results["policies"].values() for g in s["by_duration_group"]}, key=_group_order)
    lines = _header(results) + [
        f"{'policy':<10}" + "".join(f"{'dur ' + g:>12}" for g in groups) + f"{'overall':>9}{'missing':>9}{'cache':>7}"
        f"{'budget':>8}{'s/item':>8}{'decode fps':>12}"]
    for name, s in results["policies"].items():
        cells = "".join(f"{100 * s['by_duration_group'][g]['acc']:>12.1f}" if g in s["by_duration_group"] else f"{'-':>12}"
                        for g in groups)
        lines.append(f"{name:<10}{cells}{100 * s['acc']:>9.1f}{s['num_missing']:>9}{s['cache_fraction']:>7.2f}"
                     f"{_budget(s):>8}{s['seconds_per_item']:>8.2f}{s['decode_frames_per_second']:>12.0f}")
    lines.append(f"{'chance':<10}" + " " * 12 * len(groups) + f"{100 * results['chance']['overall']:>9.1f}")
    return "\n".join(lines + replay_note(results["policies"]))


def _group_order(group: str):
    return (0, float(group)) if group.replace(".", "", 1).isdigit() else (1, group)


def format_table(results: dict) -> str:
    if results["benchmark"] == "longvideobench":
        return format_lvb_table(results)
    tasks = sorted({t for s in results["policies"].values() for t in s["per_task"]})
    lines = _header(results) + [f"{'policy':<10}" + "".join(f"{t[:14]:>16}" for t in tasks) + f"{'M-Avg':>8}{'cache':>7}"
                                f"{'budget':>8}{'s/item':>8}{'decode fps':>12}"]
    for name, s in results["policies"].items():
        cells = "".join(f"{100 * s['per_task'][t]['acc']:>16.1f}" for t in tasks)
        lines.append(f"{name:<10}{cells}{100 * s['m_avg']:>8.1f}{s['cache_fraction']:>7.2f}{_budget(s):>8}"
                     f"{s['seconds_per_item']:>8.2f}{s['decode_frames_per_second']:>12.0f}")
    chance = results.get("chance", {})
    lines.append(f"{'chance':<10}" + "".join(f"{100 * chance.get(t, 0):>16.1f}" for t in tasks))
    return "\n".join(lines + mlvu.missing_note(results["policies"]) + replay_note(results["policies"]))


def replay_note(policies: dict) -> list[str]:
    """kvzip's extra cost: the seconds of its prompt reconstruction inside its s/item."""
    return [f"{name}: {s['replay_seconds_per_item']:.2f} of its {s['seconds_per_item']:.2f} s/item reconstruct the "
            f"prompt (one compression at the prompt's end)"
            for name, s in policies.items() if s.get("replay_seconds_per_item") is not None]


def plot(results: dict, path: Path) -> None:
    """A forest: a row per policy, its accuracy (M-Avg for MLVU and builtin), its cache fraction beside."""
    key, label = ("acc", "accuracy (%)") if results["benchmark"] == "longvideobench" else ("m_avg", "M-Avg accuracy (%)")
    policies = results["policies"]
    rows = [ForestRow(name, 100 * s[key], None, s["cache_fraction"], s.get("budget")) for name, s in policies.items()]
    forest(rows, label, f"{results['model']} on {results['benchmark']}, {results['frames']} frames", path,
           reference=100 * policies["full"][key] if "full" in policies else None)


def validate_args(args) -> policy_setup.PolicySetup:
    """Every argument, before data or model load; returns the policies' setup."""
    names = name_list("--policies", args.policies, policy_names())
    for option, value in (("--frames", args.frames), ("--limit", args.limit), ("--n-test", args.n_test),
                          ("--max-new-tokens", args.max_new_tokens), ("--threads", args.threads)):
        at_least(option, value, 1)  # --limit 0 used to mean "no limit": omit it for that
    at_least("--seed", args.seed, 0)
    inputs.at_most("--frames", args.frames, MAX_FRAMES, "frames decoded and held per item")
    inputs.at_most("--n-test", args.n_test, MAX_N_TEST, "videos generated per question type")
    inputs.at_most("--max-new-tokens", args.max_new_tokens, MAX_NEW_TOKENS, "a reply is a short answer")
    setup = policy_setup.resolve(args, names, DEFAULT_SCHEDULE)
    if args.answer_format == "words" and args.benchmark == "longvideobench":
        raise UserError("--answer-format words: LongVideoBench is scored by its official letter rule; use letter")
    if args.benchmark != "builtin":
        if not args.data_dir:
            raise UserError(f"--benchmark {args.benchmark} needs --data-dir with the benchmark's files")
        if not Path(args.data_dir).is_dir():
            raise UserError(f"--data-dir {args.data_dir}: folder not found")
    inputs.device("--device", args.device)
    inputs.video_model("--model", shipped_model(args.model))
    out = inputs.output_folder("--out-dir", args.out_dir)
    stored_results(args, out).check_all()  # results of earlier runs that this one may reuse
    return setup


def stored_results(args, out: Path) -> PolicyResults:
    return PolicyResults(out, RESULT_FIELDS["longvideobench" if args.benchmark == "longvideobench" else "mlvu"])


def policy_settings(args, name: str, ckpt_sha256: str | None, schedule, budgets=None,
                    namm_budget: float | None = None) -> dict:
    """Everything that changes one policy's result."""
    settings = {**model_identity(args.model), "benchmark": args.benchmark, "policy": name, "frames": args.frames,
                "limit": args.limit, "max_new_tokens": args.max_new_tokens, "dtype": args.dtype,
                "device": args.device, "seed": args.seed, "answer_format": args.answer_format}
    settings.update(policy_setup.rule_settings(name))
    settings.update(policy_setup.path_settings(name, getattr(args, "exact", False)))
    if args.benchmark == "builtin":
        settings["n_test"] = args.n_test
    else:
        settings.update(data_dir=str(Path(args.data_dir).resolve()), annotation=args.annotation,
                        subtitles=args.subtitles)
    if getattr(args, "protocol", "whole-prompt") != "whole-prompt":  # absent before the option: older results stay valid
        settings["protocol"] = args.protocol
    if name != "full":
        settings.update(n_up=schedule.n_up, prompt_end=schedule.at_prompt_end)
    if name == "namm":
        settings.update(policy_setup.namm_settings(ckpt_sha256, namm_budget))
    elif budgets is not None:
        settings["budgets"] = budgets
    elif name != "full":
        settings["budget"] = float(args.budget)
    return settings


def main(argv=None) -> int:
    """A user error (argument or file) prints one line and returns 2."""
    return cli_main(_main, argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.video", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="builtin", choices=["builtin", "mlvu", "longvideobench"])
    parser.add_argument("--data-dir", default=None,
                        help="MLVU folder (json/ and video/) or LongVideoBench folder (lvb_val.json, videos/, subtitles/)")
    parser.add_argument("--annotation", default="lvb_val.json", help="LongVideoBench annotation file in --data-dir")
    parser.add_argument("--subtitles", action="store_true", help="LongVideoBench: add the subtitles (interleaved by time)")
    parser.add_argument("--model", default=str(REPO / "checkpoints" / "llava-video-smollm2"),
                        help="a model shipped in the repository's checkpoints/ by name (llava-video-tiny, "
                             "llava-video-smollm2) or folder, or a Hugging Face LLaVA-NeXT-Video folder or name")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0, help="LongVideoBench: random choice for unparsable replies")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--policies", default="full,namm,h2o,l2")
    policy_setup.add_arguments(parser, DEFAULT_SCHEDULE)
    parser.add_argument("--limit", type=int, default=None, help="at most this many items per task (MLVU, builtin) or in all (LongVideoBench)")
    parser.add_argument("--n-test", type=int, default=100, help="videos generated for the builtin benchmark")
    parser.add_argument("--answer-format", default=None, choices=list(mlvu.ANSWER_FORMATS),
                        help="letter: MLVU's options and letter; words: the question alone, the reply matched to the "
                             "option texts (default: words, letter for longvideobench)")
    parser.add_argument("--protocol", default="whole-prompt", choices=["whole-prompt", "query-agnostic"],
                        help="whole-prompt: every policy follows the schedule over the whole prompt, question "
                             "included; query-agnostic: the prompt up to its last video token is the context, "
                             "compressed when it ends (kvpress's protocol; kvzip runs there), and the question is read "
                             "after it, kept as it comes")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default="runs/video")
    return parser


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.answer_format is None:  # LongVideoBench is scored by its letter rule only
        args.answer_format = "letter" if args.benchmark == "longvideobench" else "words"
    budgets = policy_setup.budgets_of(args.budget)
    runs = [(b, policy_setup.one_budget(args, b)) for b in budgets]
    setups = [validate_args(a) for _, a in runs]  # every input, before data or model load or any write
    out = Path(args.out_dir)
    with FolderLock(out, "eval.video output folder"):  # one writer at a time, as evolve.run's run folders
        if len(budgets) == 1:
            return _run(args, setups[0], out)
        for (b, one), setup in zip(runs, setups):  # policies' results are shared: full and the NAMM run once
            _run(one, setup, out, out / f"budget-{b}")
        from eval.video import budgets as sweep

        return sweep.main([*(str(out / f"budget-{b}") for b in budgets), "--out", str(out / "sweep")])


def _run(args, setup, out: Path, results_dir: Path | None = None) -> int:
    """One budget's run: each policy's result stored in `out`, the results and plot in `results_dir`."""
    results_dir = out if results_dir is None else results_dir
    results_dir.mkdir(parents=True, exist_ok=True)
    args.model = shipped_model(args.model)
    names = setup.names
    torch.set_num_threads(args.threads)
    from eval.video.models import load_video_chat

    remove_stale_temporaries(out)
    on_interrupt(f"each finished policy's result is in {out / 'policies'}; rerun the same command to continue")
    if args.benchmark == "longvideobench":
        items = lvb.load(args.data_dir, args.annotation)
        if args.limit:
            items = items[:args.limit]
        chance = {"overall": sum(1 / len(it.candidates) for it in items) / max(1, len(items))}
    else:
        data = builtin_split(args.n_test) if args.benchmark == "builtin" else Path(args.data_dir)
        items = mlvu.load(data, tasks=None)
        if args.limit:
            items = first_per_task(items, args.limit)
        chance = mlvu.chance_by_task(items)
    try:
        chat = load_video_chat(args.model, DTYPES[args.dtype], args.device)
    except OSError as err:  # a hub name that cannot be fetched here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--model {args.model}: cannot load: {first}") from None
    stored = stored_results(args, out)
    ckpt_sha256 = checkpoint_sha256(setup.ckpt) if "namm" in names else None
    results = {"model": chat.name, "benchmark": args.benchmark, "frames": args.frames, "protocol": args.protocol,
               "answer_format": args.answer_format, "limit": args.limit, "dtype": args.dtype,
               **({"n_test": args.n_test} if args.benchmark == "builtin" else {}), **setup.as_json(),
               "ckpt_sha256": ckpt_sha256, "chance": chance, "policies": {}}
    for i, name in enumerate(tqdm(names, desc="eval.video", unit="policy")):
        budgets = item_budgets(setup, name, results["policies"])
        settings = policy_settings(args, name, ckpt_sha256, setup.schedule, budgets, setup.namm_budget)
        summary = stored.load(name, settings)
        if summary is None:  # not done before with these settings
            summary = evaluate_policy(chat, items, name, args, setup, budgets)
            stored.save(name, settings, summary)
        results["policies"][name] = summary
        results["pending"] = names[i + 1:]
        write_json_atomic(results_dir / "results.json", results)  # what is done so far, after every policy
    del results["pending"]
    write_json_atomic(results_dir / "results.json", results)
    plot(results, results_dir / "accuracy_vs_cache.png")
    print(format_table(results))
    print(f"\nwrote {results_dir / 'results.json'} and {results_dir / 'accuracy_vs_cache.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
