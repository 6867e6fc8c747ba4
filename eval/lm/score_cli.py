"""`python -m eval.lm score --benchmark B PRED_DIR --out FILE`: score prediction files like the official scripts.

LongBench / ChouBun: PRED_DIR/<task>.jsonl with {pred, answers, all_classes[, length]} per line.
InfiniteBench: PRED_DIR/preds_<task>.jsonl with {id, prediction, ground_truth} (or pred / label).
Writes {task: score} (percent, 2 decimals) as JSON atomically and prints a table.
"""
from __future__ import annotations

import sys
from pathlib import Path

from eval.lm import choubun_metrics, infinitebench_metrics, longbench_metrics
from core.atomic import write_json_atomic
from eval.lm.jsonl import DataError, expect_str_list, expect_type, read_jsonl


def _longbench_task_files(pred_dir: Path, tasks) -> dict[str, Path]:
    files = {}
    for path in sorted(pred_dir.glob("*.jsonl")):
        if path.stem in tasks:
            files[path.stem] = path
        else:
            print(f"skipping {path}: not a task of this benchmark", file=sys.stderr)
    return files


def _check_tasks(pred_dir: Path, benchmark: str, known, wanted, found, name) -> None:
    """Every task asked for (`wanted`, or None) must have its file; an unknown name is an error."""
    if wanted is None:
        return
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise DataError(f"--tasks: unknown {benchmark} task(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    missing = [t for t in wanted if t not in found]
    if missing:
        raise DataError(f"{pred_dir}: no prediction file for task(s) {', '.join(missing)} "
                        f"(expected {', '.join(str(pred_dir / name(t)) for t in missing)})")


def score_longbench_dir(pred_dir: Path, benchmark: str = "longbench", tasks=None) -> dict[str, float]:
    module = longbench_metrics if benchmark == "longbench" else choubun_metrics
    files = _longbench_task_files(pred_dir, module.TASKS)
    _check_tasks(pred_dir, benchmark, module.TASKS, tasks, files, lambda t: f"{t}.jsonl")
    if tasks is not None:
        files = {t: p for t, p in files.items() if t in tasks}
    if not files:
        raise DataError(f"{pred_dir}: no prediction files named <task>.jsonl for any {benchmark} task")
    scores = {}
    for task, path in files.items():
        predictions, answers, all_classes = [], [], None
        for number, record in read_jsonl(path, ("pred", "answers")):
            expect_type(path, number, record, "pred", str, "a string")
            expect_str_list(path, number, record, "answers")
            expect_str_list(path, number, record, "all_classes", optional=True)
            predictions.append(record["pred"])
            answers.append(record["answers"])
            all_classes = record.get("all_classes")  # the official eval.py keeps the last line's classes
        if not predictions:
            raise DataError(f"{path}: no predictions")
        if benchmark == "longbench":
            scores[task] = longbench_metrics.task_score(task, predictions, answers, all_classes)
        else:
            scores[task] = choubun_metrics.task_score(task, predictions, answers)
    return scores


def score_infinitebench_dir(pred_dir: Path, model_name: str | None = None, tasks=None) -> dict[str, float]:
    model_name = model_name if model_name is not None else pred_dir.name
    found = {t for t in infinitebench_metrics.TASKS if (pred_dir / f"preds_{t}.jsonl").is_file()}
    _check_tasks(pred_dir, "infinitebench", infinitebench_metrics.TASKS, tasks, found, lambda t: f"preds_{t}.jsonl")
    scores = {}
    for task in infinitebench_metrics.TASKS:
        path = pred_dir / f"preds_{task}.jsonl"
        if task not in found or (tasks is not None and task not in tasks):
            continue
        predictions, labels = [], []
        for number, record in read_jsonl(path):
            pred_key = next((k for k in ("prediction", "pred") if k in record), None)
            label_key = next((k for k in ("ground_truth", "label") if k in record), None)
            if pred_key is None:
                raise DataError(f"{path}:{number}: missing field 'prediction'")
            if label_key is None:
                raise DataError(f"{path}:{number}: missing field 'ground_truth'")
            expect_type(path, number, record, pred_key, str, "a string")
            predictions.append(record[pred_key])
            labels.append(record[label_key])
        if not predictions:
            raise DataError(f"{path}: no predictions")
        try:
            scores[task] = round(infinitebench_metrics.task_score(task, predictions, labels, model_name), 2)
        except (TypeError, IndexError, KeyError) as e:
            raise DataError(f"{path}: cannot score a label: {e}") from None
    if not scores:
        raise DataError(f"{pred_dir}: no prediction files named preds_<task>.jsonl")
    return scores


def score_dir(benchmark: str, pred_dir: Path, model_name: str | None = None, tasks=None) -> dict[str, float]:
    """{task: score}. With `tasks`, exactly those (each file must exist); without, every file present."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder not found")
    if benchmark == "infinitebench":
        return score_infinitebench_dir(pred_dir, model_name, tasks)
    return score_longbench_dir(pred_dir, benchmark, tasks)


def all_tasks(benchmark: str) -> tuple[str, ...]:
    return tuple({"longbench": longbench_metrics, "choubun": choubun_metrics,
                  "infinitebench": infinitebench_metrics}[benchmark].TASKS)


def format_table(scores: dict[str, float], missing=()) -> str:
    """The scores and their average; when tasks of the benchmark are `missing`, the average says so."""
    width = max(len("task"), *(len(t) for t in scores))
    lines = [f"{'task':<{width}}  score", f"{'-' * width}  ------"]
    lines += [f"{task:<{width}}  {value:6.2f}" for task, value in scores.items()]
    if scores:
        lines.append(f"{'average':<{width}}  {sum(scores.values()) / len(scores):6.2f}"
                     + (f"  over {len(scores)} of {len(scores) + len(missing)} tasks; no file for "
                        f"{', '.join(missing)}" if missing else ""))
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--benchmark", required=True, choices=["longbench", "infinitebench", "choubun"])
    parser.add_argument("pred_dir", type=Path, help="folder of prediction files")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for {task: score}")
    parser.add_argument("--tasks", default=None,
                        help="comma-separated tasks that must all have a file (default: every file present; the "
                             "average then names the benchmark's tasks that have none)")
    parser.add_argument("--model-name", default=None,
                        help="InfiniteBench only: model name given to the scorers (gpt4 changes math_calc); "
                             "default: the folder's name, as in the official layout")


def run(args) -> int:
    from eval.inputs import output_file

    output_file("--out", args.out)  # before any file is read
    tasks = [t for t in args.tasks.split(",") if t] if args.tasks else None
    scores = score_dir(args.benchmark, args.pred_dir, args.model_name, tasks)  # a DataError: one line, status 2
    missing = [] if tasks is not None else [t for t in all_tasks(args.benchmark) if t not in scores]
    if missing:
        print(f"warning: {args.pred_dir} has no prediction file for {len(missing)} of the "
              f"{len(all_tasks(args.benchmark))} {args.benchmark} tasks ({', '.join(missing)}); the average is over "
              f"the {len(scores)} scored; pass --tasks to require a set", file=sys.stderr)
    write_json_atomic(args.out, scores)
    print(format_table(scores, missing))
    return 0
