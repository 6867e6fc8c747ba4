"""`python -m eval.lm run`: every memory policy on every task, resumable, with a table, a results
JSON and a forest plot (a row per policy: normalised score with its interval, cache fraction beside).

Predictions go to OUT/preds/<policy>/<task>.jsonl one line per item as it finishes, so a killed
run continues where it stopped. With `--budget matched` the NAMM runs first and each baseline gets, on
every item, the cache fraction the NAMM kept on that item right after its last update, so that on the
same schedule it ends with as many tokens as the NAMM, within one. Every policy updates on one schedule
(see eval.policy_setup).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from core.policies import Schedule
from eval import policy_setup
from eval.lm import builtin_tasks, checks
from eval.lm.bootstrap import difference_interval, normalised_interval
from eval.plots import ForestRow, forest
from core.atomic import remove_stale_temporaries, write_json_atomic
from core.errors import UserError, on_interrupt
from core.lock import FolderLock
from eval import inputs
from eval.lm.resume_key import checkpoint_sha256, item_sha256, prediction_settings, read_predictions


def load_model(name: str, dtype: str = "float32"):
    """adapters.loading's, imported when a model is needed (transformers takes seconds to import: a bad
    argument is refused before that)."""
    from adapters.loading import DTYPES, load_model as load
    return load(name, DTYPES[dtype])


def greedy_generate(*args, **kwargs):
    from adapters.hf import greedy_generate as generate
    return generate(*args, **kwargs)


@dataclass
class EvalItem:
    id: str
    task: str
    text: str
    max_new_tokens: int
    question_char: int | None = None  # where the uncompressed question starts in `text` (query-agnostic)
    answers: object = None  # the gold answers: with the text, what a stored prediction must have answered


@dataclass
class TaskSet:
    items: list[EvalItem]
    score: Callable[[str, list[EvalItem], list[str]], float]  # (task, items, predictions) -> 0..100
    chance: dict[str, float] = field(default_factory=dict)  # task -> score of a random guess among options
    formats: dict[str, str] = field(default_factory=dict)  # task -> prompt format, where it was chosen here


def builtin_taskset(tasks, n, length, seed, tokenizer) -> TaskSet:
    items, originals, chance, formats = [], {}, {}, {}
    for task in tasks:
        formats[task] = builtin_tasks.prompt_format(task, tokenizer)
        made = builtin_tasks.make_items(task, n, length, seed=seed, tokenizer=tokenizer)
        chance[task] = 100 * sum(item.chance for item in made) / max(1, len(made))
        for i, item in enumerate(made):
            key = f"{task}-{length}-{seed}-{i}"
            originals[key] = item
            text = builtin_tasks.render(item, tokenizer)
            items.append(EvalItem(key, task, text, builtin_tasks.MAX_NEW_TOKENS[task],
                                  builtin_tasks.question_offset(item, text), list(item.answers)))

    def score(task, task_items, predictions):
        return 100 * sum(builtin_tasks.score_item(originals[it.id], p)
                         for it, p in zip(task_items, predictions)) / len(task_items)

    return TaskSet(items, score, chance, formats)


def benchmark_taskset(benchmark, data_dir, tasks, tokenizer, max_length, limit) -> TaskSet:
    from eval.lm.loaders import LOADERS

    if benchmark not in LOADERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from builtin, {', '.join(LOADERS)}")
    samples = {}
    items = []
    for task in tasks:
        for sample in LOADERS[benchmark](data_dir, task, tokenizer=tokenizer, max_length=max_length, limit=limit):
            key = f"{task}-{sample.id}"
            samples[key] = sample
            items.append(EvalItem(key, task, sample.prompt, sample.max_new_tokens,
                                  answers=[sample.answers, sample.all_classes]))

    def score(task, task_items, predictions):
        answers = [samples[it.id].answers for it in task_items]
        if benchmark == "infinitebench":
            from eval.lm.infinitebench_metrics import task_score
            return task_score(task, predictions, answers)
        if benchmark == "choubun":
            from eval.lm.choubun_metrics import task_score
            return task_score(task, predictions, answers)
        from eval.lm.longbench_metrics import task_score
        return task_score(task, predictions, answers, samples[task_items[0].id].all_classes)

    return TaskSet(items, score)


def question_token(tokenizer, item: EvalItem) -> int:
    """The first token of the item's question: the query-agnostic protocol compresses the tokens before it."""
    offsets = tokenizer(item.text, return_offsets_mapping=True)["offset_mapping"]
    return next(i for i, (start, _) in enumerate(offsets) if start >= item.question_char)


DEFAULT_SCHEDULE = Schedule(512, at_prompt_end=True)  # where no NAMM checkpoint or option sets it


def validate(args) -> policy_setup.PolicySetup:
    """Every input of a run, before the model loads: arguments (numbers within the model's context and
    this machine's memory), the model folder, the benchmark's data files, the output folder and the
    predictions already stored there. Returns the policies' setup."""
    policies = checks.validate_run_args(args)
    setup = policy_setup.resolve(args, policies, DEFAULT_SCHEDULE)
    limit, where = inputs.token_limit(inputs.language_model("--model", args.model))
    tasks = args.tasks.split(",")
    if args.benchmark == "builtin":
        answer = max(builtin_tasks.MAX_NEW_TOKENS[t] for t in tasks)
        if args.length + answer > limit:
            raise UserError(f"--length {args.length}: prompts of {args.length} tokens with their answer ({answer} "
                            f"tokens) do not fit {where}; pass a smaller --length")
        inputs.items_fit_in_memory("--n", args.n, args.length, len(tasks))
    else:
        inputs.at_most("--max-length", args.max_length, limit, where)
        from eval.lm.loaders import LOADERS

        for task in tasks:  # every record's fields, before anything runs (prompts are cut once the model loads)
            LOADERS[args.benchmark](Path(args.data_dir), task, limit=args.n)
    out = inputs.output_folder("--out-dir", args.out_dir)
    for path in sorted((out / "preds").glob("*/*.jsonl")) if (out / "preds").is_dir() else ():
        read_predictions(path, lambda _id: None, repair=False)  # each stored row's fields and types; no write
    return setup


def load_language_model(name: str, dtype: str = "float32"):
    try:
        return load_model(name, dtype)
    except (OSError, ValueError) as err:  # a hub name that cannot be fetched, a folder the loader refuses
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"--model {name}: cannot load: {first}") from None


def run_policies(args, setup: policy_setup.PolicySetup | None = None) -> dict:
    setup = setup or validate(args)  # every input, before the model loads
    torch.set_num_threads(args.threads)
    model, tokenizer = load_language_model(args.model, args.dtype)
    tasks = args.tasks.split(",")
    if args.benchmark == "builtin":
        taskset = builtin_taskset(tasks, args.n, args.length, args.seed, tokenizer)
    else:
        taskset = benchmark_taskset(args.benchmark, Path(args.data_dir), tasks, tokenizer, args.max_length, args.n)
    checks.check_prompt_lengths(taskset.items, tokenizer, model, args.benchmark)
    out = Path(args.out_dir)
    query_agnostic = args.protocol == "query-agnostic"
    replaying = [n for n in setup.names if n in checks.REPLAYING]
    if replaying:  # only query-agnostic here (checks); the schedule must not update inside a context
        longest = max(question_token(tokenizer, item) for item in taskset.items)
        if longest >= setup.schedule.n_up:
            raise UserError(f"--policies {replaying[0]}: contexts reach {longest} tokens and every policy updates "
                            f"every {setup.schedule.n_up}, inside a context, where kvzip cannot run; give --n-up "
                            f"above the longest context (one compression per context, as kvpress compresses)")
    results: dict = {"model": args.model, "benchmark": args.benchmark, "tasks": tasks, **setup.as_json(),
                     "protocol": args.protocol, "dtype": args.dtype,
                     "policies": {}}
    if args.benchmark == "builtin":
        results.update(length=args.length, seed=args.seed, prompt_formats=taskset.formats)
    ckpt_sha256 = results["ckpt_sha256"] = checkpoint_sha256(setup.ckpt) if "namm" in setup.names else None
    namm_rows: dict[str, dict] = {}  # item id -> the NAMM's row: its fractions set matched budgets
    progress = tqdm(total=len(setup.names) * len(taskset.items), desc="eval.lm", unit="item")
    for name in setup.names:
        per_task = {}
        for task in tasks:
            task_items = [it for it in taskset.items if it.task == task]
            budgets = {it.id: item_budget(setup, name, namm_rows.get(it.id)) for it in task_items}
            settings = {it.id: {**prediction_settings(args, name, budgets[it.id], ckpt_sha256, setup.schedule),
                                "item_sha256": item_sha256(it.text, it.answers)} for it in task_items}
            path = out / "preds" / name / f"{task}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            done = read_predictions(path, settings.get)
            with path.open("a") as sink:
                for item in task_items:
                    if item.id not in done:
                        ids = tokenizer(item.text, return_tensors="pt").input_ids
                        context_end = question_token(tokenizer, item) if query_agnostic else None
                        policy = setup.build(name, budgets[item.id])
                        replay = {}
                        if getattr(policy, "replays_context", False):  # kvzip (query-agnostic only: checks)
                            from adapters.hf.kvzip import replay_prompt

                            replay = {"replay_prompt": replay_prompt(tokenizer)}
                        started = time.perf_counter()
                        gen = greedy_generate(model, ids, policy, max_new_tokens=item.max_new_tokens,
                                              eos_token_id=tokenizer.eos_token_id, context_end=context_end,
                                              exact=setup.exact, **replay)
                        row = {"id": item.id, "prediction": tokenizer.decode(gen.tokens[0], skip_special_tokens=True),
                               "cache_fraction": gen.cache_fraction, "fraction_at_update": gen.fraction_at_update,
                               "prompt_tokens": ids.shape[1], "processed_tokens": gen.processed_tokens,
                               "seconds": time.perf_counter() - started, "replay_seconds": gen.replay_seconds,
                               "settings": settings[item.id]}
                        sink.write(json.dumps(row, ensure_ascii=False) + "\n")
                        sink.flush()
                        done[item.id] = row
                    progress.update()
            rows = [done[it.id] for it in task_items]
            if name == "namm":
                namm_rows.update((it.id, r) for it, r in zip(task_items, rows))
            given = [budgets[it.id] for it in task_items if budgets[it.id] is not None]
            per_task[task] = {
                "score": taskset.score(task, task_items, [r["prediction"] for r in rows]),
                "item_scores": [taskset.score(task, [it], [r["prediction"]]) for it, r in zip(task_items, rows)],
                "cache_fraction": sum(r["cache_fraction"] for r in rows) / len(rows),
                "seconds_per_item": sum(r["seconds"] for r in rows) / len(rows),
                # kvzip's context reconstruction, inside seconds_per_item (0 for every other policy)
                "replay_seconds_per_item": sum(r.get("replay_seconds", 0.0) for r in rows) / len(rows),
                "n": len(rows),
                "budget": sum(given) / len(given) if given else None,
            }
            if setup.matched and given:
                per_task[task]["budgets"] = given
        results["policies"][name] = per_task
    progress.close()
    add_normalised(results, taskset.chance)
    return results


def item_budget(setup, name: str, namm_row: dict | None) -> float | None:
    """The budget a policy gets on one item: None for the full cache and a threshold NAMM (a top-k NAMM:
    the run's), else the run's fixed budget, or (matched) the NAMM's fraction right after its last update
    on this item."""
    if name == "namm":
        return setup.namm_budget
    if name == "full":
        return None
    if not setup.matched:
        return setup.budget
    return policy_setup.matched_budget(namm_row["fraction_at_update"])


def _mean_ratio(per_task: dict, full: dict | None, tasks) -> float | None:
    ratios = [per_task[t]["score"] / full[t]["score"] for t in tasks if full and full[t]["score"] > 0]
    return sum(ratios) / len(ratios) if ratios else None


def add_normalised(results: dict, chance: dict[str, float] | None = None) -> None:
    """Mean over tasks of score / full-cache score, as the paper reports.

    A task whose full-cache score is not above chance makes that ratio noise (a guess can beat the full
    cache). Such tasks are listed under "tasks_at_chance", and each summary also gets
    "normalised_score_above_chance", the same mean over the other tasks; "normalised_score" is unchanged.
    """
    full = results["policies"].get("full")
    at_chance = {t: {"full": full[t]["score"], "chance": c} for t, c in (chance or {}).items()
                 if full and t in full and c > 0 and full[t]["score"] <= c}
    if at_chance:
        results["tasks_at_chance"] = at_chance
    for name, per_task in results["policies"].items():
        per_task_values = list(per_task.values())
        summary = {
            "normalised_score": _mean_ratio(per_task, full, per_task),
            "mean_score": sum(v["score"] for v in per_task_values) / len(per_task_values),
            "cache_fraction": sum(v["cache_fraction"] for v in per_task_values) / len(per_task_values),
        }
        if at_chance:
            summary["normalised_score_above_chance"] = _mean_ratio(
                per_task, full, [t for t in per_task if t not in at_chance])
        if full and all("item_scores" in v for v in per_task.values()) and all("item_scores" in v for v in full.values()):
            items = {t: v["item_scores"] for t, v in per_task.items()}
            full_items = {t: v["item_scores"] for t, v in full.items()}
            summary["normalised_ci95"] = normalised_interval(items, full_items, list(per_task))
            if at_chance:
                summary["normalised_above_chance_ci95"] = normalised_interval(
                    items, full_items, [t for t in per_task if t not in at_chance])
            namm = results["policies"].get("namm")
            if namm and name not in ("namm", "full") and all("item_scores" in v for v in namm.values()):
                namm_items = {t: v["item_scores"] for t, v in namm.items()}
                gap = _mean_ratio(per_task, full, per_task)
                namm_norm = _mean_ratio(namm, full, namm)
                if gap is not None and namm_norm is not None:
                    summary["vs_namm"] = gap - namm_norm
                    summary["vs_namm_ci95"] = difference_interval(items, namm_items, full_items, list(per_task))
        results.setdefault("summary", {})[name] = summary


def format_table(results: dict) -> str:
    tasks = results["tasks"]
    w = max([10] + [len(name) + 1 for name in results["policies"]])  # adakv(expected_attention) is long
    head = (f"{'policy':<{w}}" + "".join(f"{t[:18]:>20}" for t in tasks)
            + f"{'mean':>9}{'norm.':>8}{'95% interval':>16}{'cache':>7}{'budget':>8}")
    lines = [f"{'':<{w}}" + "".join(f"{'score / cache':>20}" for _ in tasks)]
    protocol = {"query-agnostic": "query-agnostic: the context compressed when it ends, the question appended "
                                  "uncompressed",
                "whole-prompt": "whole prompt compressed, question included"}[results.get("protocol", "whole-prompt")]
    if "schedule" in results:
        lines = [results["schedule"]["description"] + policy_setup.path_line(results.get("exact", True)),
                 f"baselines' budget: {results['budget_mode']}",
                 f"protocol: {protocol}", head] + lines
    else:
        lines = [f"protocol: {protocol}", head] + lines
    for name, per_task in results["policies"].items():
        s = results["summary"][name]
        cells = "".join(f"{per_task[t]['score']:>13.1f} / {per_task[t]['cache_fraction']:.2f}" for t in tasks)
        norm = f"{s['normalised_score']:.3f}" if s["normalised_score"] is not None else "n/a"
        ci = s.get("normalised_ci95")
        interval = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"
        budgets = [per_task[t]["budget"] for t in tasks if per_task[t].get("budget") is not None]
        budget = f"{sum(budgets) / len(budgets):.2f}" if budgets else "-"
        lines.append(f"{name:<{w}}{cells}{s['mean_score']:>9.1f}{norm:>8}{interval:>16}{s['cache_fraction']:>7.2f}"
                     f"{budget:>8}")
    gaps = [(name, s) for name, s in results["summary"].items() if s.get("vs_namm_ci95")]
    if gaps:
        lines.append("normalised score minus the NAMM's on the same items (paired 95% bootstrap interval): " + ", ".join(
            f"{name} {s['vs_namm']:+.3f} [{s['vs_namm_ci95'][0]:+.3f}, {s['vs_namm_ci95'][1]:+.3f}]" for name, s in gaps))
    for name, per_task in results["policies"].items():
        replay = [per_task[t].get("replay_seconds_per_item", 0.0) for t in tasks]
        if any(replay):
            total = sum(per_task[t]["seconds_per_item"] for t in tasks) / len(tasks)
            lines.append(f"{name}: its context reconstruction took {sum(replay) / len(replay):.2f} s/item "
                         f"(of {total:.2f} s/item in all)")
    for task, fmt in results.get("prompt_formats", {}).items():
        if fmt == builtin_tasks.PLAIN_NO_TEMPLATE:
            lines.append(f"{task}: plain prompts (calibrated in the chat template; this model has none)")
    for task, v in results.get("tasks_at_chance", {}).items():
        lines.append(f"\n{task}: the full cache scores {v['full']:.1f}, not above chance ({v['chance']:.1f}); "
                     "its score ratios are noise.")
    if results.get("tasks_at_chance"):
        lines.append("normalised over the tasks above chance: " + ", ".join(
            f"{name} {s['normalised_score_above_chance']:.3f}" if s["normalised_score_above_chance"] is not None
            else f"{name} n/a" for name, s in results["summary"].items()))
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """A forest: a row per policy, its normalised score with the paired 95% interval (the mean score where
    no full cache ran), its mean cache fraction written beside."""
    has_norm = any(s["normalised_score"] is not None for s in results["summary"].values())
    rows = []
    for name, s in results["summary"].items():
        budgets = [v["budget"] for v in results["policies"][name].values() if v.get("budget") is not None]
        ci = s.get("normalised_ci95") if has_norm else None
        rows.append(ForestRow(name, s["normalised_score"] if has_norm else s["mean_score"], tuple(ci) if ci else None,
                              s["cache_fraction"], sum(budgets) / len(budgets) if budgets else None))
    forest(rows, "score / full cache's on the same items (95% paired interval)" if has_norm else "mean score",
           f"{results['model']} on {results['benchmark']}: {', '.join(results['tasks'])}", path,
           reference=1.0 if has_norm else None)


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="smollm2", help="smollm2, gemma3-270m, a hub name or a local folder")
    parser.add_argument("--benchmark", default="builtin", help="builtin, longbench, infinitebench or choubun")
    parser.add_argument("--data-dir", default=None, help="folder with the benchmark's official files")
    parser.add_argument("--tasks", default="passkey,kv_retrieval")
    parser.add_argument("--policies", default="full,namm,h2o,l2")
    policy_setup.add_arguments(parser, DEFAULT_SCHEDULE)
    parser.add_argument("--protocol", default="whole-prompt", choices=("whole-prompt", "query-agnostic"),
                        help="whole-prompt: every policy compresses the whole prompt, question included; "
                             "query-agnostic (as kvpress evaluates): the context is compressed when it ends, "
                             "then the question is appended uncompressed")
    parser.add_argument("--n", type=int, default=10, help="items per task (builtin), or a limit (benchmarks)")
    parser.add_argument("--length", type=int, default=1000, help="builtin prompt length in tokens")
    parser.add_argument("--max-length", type=int, default=None, help="middle-truncate benchmark prompts to this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                        help="the model's weights and activations (bfloat16: about 2.4x faster prefill on a CPU "
                             "with avx512_bf16; compare policies only within one dtype)")
    parser.add_argument("--out-dir", default="runs/lm")


def write_one(results: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "results.json", results)
    plot(results, folder / "score_vs_cache.png")


def run(args) -> int:
    from eval.lm import sweep

    budgets = policy_setup.budgets_of(args.budget)
    if len(budgets) > 1:
        setups = {b: validate(policy_setup.one_budget(args, b)) for b in budgets}  # every budget, before any runs
        on_interrupt(f"the predictions made so far are in {Path(args.out_dir) / 'preds'}; rerun the same command "
                     f"to continue from them")
        out = Path(args.out_dir)
        with FolderLock(out, "eval.lm output folder"):
            remove_stale_temporaries(out)
            return sweep.run_sweep(args, setups, run_policies, write_one)
    setup = validate(args)
    on_interrupt(f"the predictions made so far are in {Path(args.out_dir) / 'preds'}; rerun the same command to "
                 f"continue from them")
    out = Path(args.out_dir)
    with FolderLock(out, "eval.lm output folder"):  # one writer at a time, as evolve.run's run folders
        remove_stale_temporaries(out)  # of killed runs only: each names its writer's pid
        results = run_policies(args, setup)
        write_json_atomic(out / "results.json", results)
        plot(results, out / "score_vs_cache.png")
    print(format_table(results))
    print(f"\nwrote {out / 'results.json'} and {out / 'score_vs_cache.png'}")
    return 0
