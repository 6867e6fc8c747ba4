"""`python -m eval.video.budgets RUN [RUN ...] --out PREFIX`: one table and one plot from several
`eval.video` runs (their output folders or results JSON files) (MLVU or builtin) that differ only in the baselines' budget (e.g. `--budget matched`,
`0.5`, `0.25`), so the NAMM is seen against every baseline at its own cache fraction and at fixed ones.

The runs must share model, benchmark, frames, answer format, NAMM checkpoint, update schedule and items
(the same number per task). The full cache and a threshold NAMM come from the first run that has them (they
do not depend on the baselines' budget; a different result for either across runs is an error). A top-k NAMM
(its result has a budget) is a row per budget like a baseline, and each row's "vs namm" is against the NAMM
at the same budget. Every score carries a 95% interval: Wilson per task, a bootstrap over items (resampled
within each task) for M-Avg, and for "vs namm" the paired bootstrap of the M-Avg difference on the same items.

Writes PREFIX.md (the table), PREFIX.json (the numbers) and PREFIX.png (M-Avg against the budget given,
one line per baseline across its budgets, the NAMM at its cache fraction, the full cache as a dashed line).
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

from core.atomic import write_json_atomic, write_text_atomic
from core.errors import UserError, cli_main
from eval.video.accuracy import wilson

SHARED = ("model", "benchmark", "frames", "answer_format", "ckpt_sha256", "schedule", "limit", "n_test", "dtype",
          "protocol")
SINGLE = ("full", "namm")


def results_path(run: Path) -> Path:
    return run if run.suffix == ".json" else run / "results.json"


def read_run(run: Path) -> dict:
    path = results_path(run)
    if not path.is_file():
        raise UserError(f"{path}: not found (give eval.video output folders or their results JSON files)")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not readable JSON ({err})") from None
    for field in ("benchmark", "policies", "budget"):
        if field not in results:
            raise UserError(f"{path}: missing field {field!r}")
    if results["benchmark"] == "longvideobench":
        raise UserError(f"{path}: LongVideoBench runs are not supported here (no per-task items); use MLVU or builtin")
    if results.get("pending"):
        raise UserError(f"{path}: the run is not finished (pending: {', '.join(results['pending'])})")
    return results


def _outcomes(summary: dict, where: str) -> dict[str, np.ndarray]:
    out = {}
    for task, row in summary["per_task"].items():
        if "correct" not in row:
            raise UserError(f"{where}: task {task!r} has no per-item outcomes ('correct'); rerun it with this version")
        out[task] = np.asarray(row["correct"], dtype=float)
    return out


def check_same(runs: list[tuple[Path, dict]]) -> None:
    first_path, first = runs[0]
    for path, results in runs[1:]:
        for key in SHARED:
            if key in first and key in results and first[key] != results[key]:
                raise UserError(f"{results_path(path)}: field {key!r} is {results[key]!r}, but "
                                f"{results_path(first_path)} has {first[key]!r}; the runs must differ only in --budget")


def collect(runs: list[tuple[Path, dict]]) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """(rows, outcomes): rows[label] = summary and budget label; outcomes[label][task] = 0/1 per item."""
    check_same(runs)
    rows, outcomes, sizes = {}, {}, None
    for path, results in runs:
        label_budget = "matched" if results["budget"] == "matched" else f"{float(results['budget']):g}"
        for name, summary in results["policies"].items():
            where = f"{results_path(path)} policy {name}"
            single = name == "full" or (name == "namm" and summary.get("budget") is None)  # threshold NAMM
            label = name if single else f"{name} @ {label_budget}"
            items = _outcomes(summary, where)
            shape = {t: len(v) for t, v in items.items()}
            if sizes is None:
                sizes = (shape, where)
            elif shape != sizes[0]:
                raise UserError(f"{where}: items per task {shape} differ from {sizes[1]}'s {sizes[0]}")
            if label in rows:
                if any(not np.array_equal(items[t], outcomes[label][t]) for t in items):
                    raise UserError(f"{where}: differs from the same policy in an earlier run; "
                                    "the runs do not share the model or items")
                continue
            rows[label] = {"policy": name, "budget": None if single else label_budget, "summary": summary}
            outcomes[label] = items
    if not rows:
        raise UserError("no policies in the given runs")
    order = [label for label in SINGLE if label in rows]
    policies = sorted(dict.fromkeys(r["policy"] for r in rows.values() if r["budget"] is not None),
                      key=lambda p: p != "namm")  # a top-k NAMM's budgets first
    for policy in policies:  # each baseline's budgets together, largest cache first
        order += sorted((label for label, r in rows.items() if r["policy"] == policy),
                        key=lambda label: -rows[label]["summary"]["cache_fraction"])
    return {label: rows[label] for label in order}, outcomes


def m_avg_draws(items: dict[str, np.ndarray], index: dict[str, np.ndarray]) -> np.ndarray:
    return np.mean([items[t][index[t]].mean(axis=1) for t in sorted(items)], axis=0)


def namm_references(rows: dict) -> dict[str, str]:
    """Each row's NAMM row for "vs namm": the threshold NAMM, else the top-k NAMM at the row's budget."""
    out = {}
    for label, row in rows.items():
        ref = "namm" if "namm" in rows else f"namm @ {row['budget']}"
        if ref in rows and ref != label:
            out[label] = ref
    return out


def intervals(outcomes: dict[str, dict[str, np.ndarray]], draws: int = 4000, seed: int = 0,
              references: dict[str, str] | None = None) -> dict[str, dict]:
    """M-Avg and its 95% bootstrap interval per row, and the paired difference to its NAMM row (`references`:
    label -> the NAMM's label; default: the row "namm" for every other row)."""
    rng = np.random.default_rng(seed)
    sizes = {t: len(v) for t, v in next(iter(outcomes.values())).items()}
    tasks = sorted(sizes)
    index = {t: rng.integers(0, sizes[t], size=(draws, sizes[t])) for t in tasks}
    draws_of = {label: m_avg_draws(items, index) for label, items in outcomes.items()}
    point = {label: float(np.mean([items[t].mean() for t in tasks])) for label, items in outcomes.items()}
    if references is None:
        references = {label: "namm" for label in outcomes if "namm" in outcomes and label != "namm"}
    out = {}
    for label in outcomes:
        entry = {"m_avg": point[label], "m_avg_ci": [float(x) for x in np.quantile(draws_of[label], [0.025, 0.975])]}
        ref = references.get(label)
        if ref is not None:
            entry["vs_namm"] = point[label] - point[ref]
            entry["vs_namm_ci"] = [float(x) for x in np.quantile(draws_of[label] - draws_of[ref], [0.025, 0.975])]
        out[label] = entry
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(rows: dict, stats: dict, outcomes: dict) -> str:
    tasks = sorted(next(iter(outcomes.values())))
    head = ["policy", "budget"] + tasks + ["M-Avg [95%]", "vs namm [95%]", "cache", "s/item"]  # kvzip's: with replay
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in rows.items():
        cells = []
        for t in tasks:
            hits, n = int(outcomes[label][t].sum()), len(outcomes[label][t])
            lo, hi = wilson(hits, n)
            cells.append(f"{_pct(hits / n)} [{100 * lo:.0f}, {100 * hi:.0f}]" if n else "-")
        s = stats[label]
        m = f"{_pct(s['m_avg'])} [{_pct(s['m_avg_ci'][0])}, {_pct(s['m_avg_ci'][1])}]"
        vs = (f"{100 * s['vs_namm']:+.1f} [{100 * s['vs_namm_ci'][0]:+.1f}, {100 * s['vs_namm_ci'][1]:+.1f}]"
              if "vs_namm" in s else "-")
        summary = row["summary"]
        lines.append("| " + " | ".join([row["policy"], row["budget"] or "-"] + cells +
                                        [m, vs, f"{summary['cache_fraction']:.2f}", f"{summary['seconds_per_item']:.1f}"]) + " |")
    return "\n".join(lines)


def plot(rows: dict, stats: dict, title: str, path: Path) -> None:
    """M-Avg against the budget given, a line per baseline (a matched run at its mean budget, the NAMM's
    cache fraction on average), the NAMM as a star at its cache fraction, the full cache as a dashed line."""
    from eval.plots import budget_sweep

    def point(label):
        s = stats[label]
        return 100 * s["m_avg"], (100 * s["m_avg_ci"][0], 100 * s["m_avg_ci"][1])

    lines: dict[str, list] = {}
    singles = {}
    for label, row in rows.items():
        y, ci = point(label)
        if row["policy"] == "namm" and row["budget"] is None:  # a threshold NAMM: at its cache fraction
            singles["namm"] = (row["summary"]["cache_fraction"], y, ci)
        elif row["policy"] != "full":
            given = row["summary"].get("budget")  # a matched run's mean of the budgets it gave
            if given is None:  # older results: a matched baseline kept the NAMM's fraction, within a token
                given = row["summary"]["cache_fraction"] if row["budget"] == "matched" else row["budget"]
            x = float(given)
            lines.setdefault(row["policy"], []).append((x, y, ci))
    full = point("full")[0] if "full" in rows else None
    budget_sweep(lines, "M-Avg accuracy (%), 95% bootstrap", title, path, full=full, points=singles,
                 xlabel="budget given (fraction of processed tokens kept; matched: the mean)")


def main(argv=None) -> int:
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.video.budgets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="eval.video output folders (each with results.json) or results JSON files")
    parser.add_argument("--out", required=True, help="output prefix: writes PREFIX.md, PREFIX.json, PREFIX.png")
    parser.add_argument("--draws", type=int, default=4000, help="bootstrap draws")
    args = parser.parse_args(argv)
    if args.draws < 100:
        raise UserError(f"--draws {args.draws}: use at least 100")
    runs = [(Path(r), read_run(Path(r))) for r in args.runs]
    rows, outcomes = collect(runs)
    stats = intervals(outcomes, args.draws, references=namm_references(rows))
    first = runs[0][1]
    title = f"{first['model']} on {first['benchmark']}, {first['frames']} frames, {first.get('answer_format', 'letter')} answers"
    text = table(rows, stats, outcomes)
    n_items = sum(len(v) for v in next(iter(outcomes.values())).values())
    header = (f"{title}\n\n{first['schedule']['description']}; NAMM {first.get('ckpt')} used unchanged; "
              f"{n_items} items per policy. Task cells: accuracy % [95% Wilson]; M-Avg: mean over tasks [95% bootstrap over items]; "
              f"vs namm: paired M-Avg difference in points [95% bootstrap]"
              f"{' to the NAMM at the same budget' if 'namm' not in rows else ''}.\n\n")
    md, js, png = (Path(f"{args.out}.{ext}") for ext in ("md", "json", "png"))
    md.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(md, header + text + "\n")
    write_json_atomic(js, {
        "runs": [str(p) for p, _ in runs], "title": title,
        "rows": {label: {"policy": r["policy"], "budget": r["budget"],
                         "cache_fraction": r["summary"]["cache_fraction"],
                         "seconds_per_item": r["summary"]["seconds_per_item"],
                         "per_task": {t: float(v.mean()) for t, v in outcomes[label].items()}, **stats[label]}
                 for label, r in rows.items()}})
    plot(rows, stats, title, png)
    print(header + text)
    print(f"\nwrote {md}, {js} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
