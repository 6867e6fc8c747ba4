"""Paired differences between policies of different eval.lm runs on the same items: each policy's normalised
score minus the reference's, with a paired 95% bootstrap interval (one item draw for both policies and the
full cache). For rows that cannot share one run, e.g. two NAMM checkpoints (eval.lm takes one --ckpt), or a
threshold NAMM beside a fixed-budget table.

    python -m bench.paired_difference RUN_A/results.json:namm RUN_B/results.json:namm RUN_A/results.json:tova

The first POLICY is the reference; the full cache comes from its run. Every run must hold the same items
(tasks, length, seed and n); a run whose full cache differs item by item is refused.

eval.video results (per-item outcomes under `correct`) are compared the same way in M-Avg points: each row
minus the reference, with eval.video's paired bootstrap over items resampled within each task.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.errors import UserError, cli_main


def load(spec: str) -> tuple[str, dict, dict]:
    path, _, policy = spec.rpartition(":")
    if not path or not policy:
        raise UserError(f"{spec}: expected RESULTS.json:POLICY")
    results = json.loads(Path(path).read_text())
    if policy not in results.get("policies", {}):
        raise UserError(f"{path}: no policy {policy!r}; it holds {', '.join(results.get('policies', {}))}")
    run = Path(path).parent.name if Path(path).name == "results.json" else Path(path).stem
    return f"{run}:{policy}", results, results["policies"][policy]


def unique_labels(rows, specs):
    """Rows named RUN:POLICY, with the run's folder path where two rows would share a name."""
    labels = [label for label, _, _ in rows]
    out = []
    for (label, results, summary), spec in zip(rows, specs):
        if labels.count(label) > 1:
            label = spec
        out.append((label, results, summary))
    return out


def item_scores(per_task: dict, tasks) -> dict[str, list[float]]:
    return {t: per_task[t]["item_scores"] for t in tasks if t in per_task}


def main(argv=None) -> int:
    from eval.lm.bootstrap import difference_interval

    parser = argparse.ArgumentParser(prog="python -m bench.paired_difference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="+", help="RESULTS.json:POLICY (the first is the reference)")
    args = parser.parse_args(argv)
    rows = unique_labels([load(spec) for spec in args.rows], args.rows)
    if is_video(rows[0][2]):
        return video_rows(rows)
    _, ref_results, ref = rows[0]
    tasks = ref_results["tasks"]
    full = item_scores(ref_results["policies"].get("full") or {}, tasks)
    if not full:
        raise UserError(f"{args.rows[0]}: its run has no full-cache row to normalise by")
    for label, results, _ in rows[1:]:
        other_full = item_scores(results["policies"].get("full") or {}, tasks)
        if other_full and other_full != full:
            raise UserError(f"{label}: its full cache scored other items than the reference's run (not paired)")
    print(f"{'row':<40} {'cache':>6}   normalised score minus {rows[0][0]}'s [95% paired interval]")
    for label, _, per_task in rows:
        cache = sum(per_task[t]["cache_fraction"] for t in tasks) / len(tasks)
        if per_task is ref:
            print(f"{label:<40} {cache:6.3f}   (reference)")
            continue
        interval = difference_interval(item_scores(per_task, tasks), item_scores(ref, tasks), full, tasks)
        scored = [t for t in tasks if sum(full[t]) > 0]  # a task the full cache never answers carries no ratio
        gap = sum((sum(per_task[t]["item_scores"]) - sum(ref[t]["item_scores"])) / sum(full[t])
                  for t in scored) / len(scored)
        text = f"{gap:+.3f}" + (f" [{interval[0]:+.3f}, {interval[1]:+.3f}]" if interval else "")
        print(f"{label:<40} {cache:6.3f}   {text}")
    return 0


def is_video(summary: dict) -> bool:
    return "per_task" in summary and all("correct" in row for row in summary["per_task"].values())


def video_rows(rows) -> int:
    """M-Avg of each eval.video row and its paired difference to the first row's (points)."""
    import numpy as np

    from eval.video.budgets import intervals

    outcomes, fulls = {}, {}
    for label, results, summary in rows:
        if not is_video(summary):
            raise UserError(f"{label}: not an eval.video result with per-item outcomes; the reference is one")
        outcomes[label] = {t: np.asarray(r["correct"], dtype=float) for t, r in summary["per_task"].items()}
        full = results["policies"].get("full")
        if full is not None:
            fulls[label] = {t: r["correct"] for t, r in full["per_task"].items()}
    reference = rows[0][0]
    shape = {t: len(v) for t, v in outcomes[reference].items()}
    for label, items in outcomes.items():
        if {t: len(v) for t, v in items.items()} != shape:
            raise UserError(f"{label}: items per task differ from {reference}'s {shape} (not paired)")
    if len({json.dumps(f, sort_keys=True) for f in fulls.values()}) > 1:
        raise UserError("the runs' full caches answered other items (not paired)")
    stats = intervals(outcomes, references={label: reference for label in outcomes if label != reference})
    print(f"{'row':<40} {'cache':>6}   {'M-Avg':>6}   minus {reference}'s [95% paired interval]")
    for label, _, summary in rows:
        s = stats[label]
        text = ("(reference)" if label == reference else
                f"{100 * s['vs_namm']:+.1f} [{100 * s['vs_namm_ci'][0]:+.1f}, {100 * s['vs_namm_ci'][1]:+.1f}]")
        print(f"{label:<40} {summary.get('cache_fraction', float('nan')):6.3f}   {100 * s['m_avg']:6.1f}   {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(main))
