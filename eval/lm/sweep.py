"""`--budget 0.5,0.25`: one eval.lm run at several fixed budgets, one table and one plot of score against
budget (a line per policy, as kvpress plots its presses).

Every budget's predictions go to the same `OUT/preds/<policy>/<task>.jsonl` files, each row keyed by its
settings: the full cache (and a threshold NAMM, whose cache size is its own) carry no budget in their
settings, so they run once and serve every budget. Each budget's results are written as
`OUT/budget-<b>/results.json` (with its forest plot); the sweep as `OUT/sweep.md`, `sweep.json`, `sweep.png`.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.atomic import write_json_atomic, write_text_atomic
from eval import policy_setup
from eval.plots import budget_sweep


def sweep_table(runs: dict[str, dict]) -> tuple[str, dict]:
    """Markdown table (a row per policy, a column per budget: normalised score [95%] and cache) and its JSON."""
    budgets = list(runs)
    policies = list(dict.fromkeys(name for r in runs.values() for name in r["summary"]))
    first = runs[budgets[0]]
    rows, data = [], {"budgets": [float(b) for b in budgets], "policies": {}}
    head = "| policy | " + " | ".join(f"budget {float(b):g}: normalised [95%] / cache" for b in budgets) + " |"
    # normalised: mean over tasks of score / the full cache's on the same items (n/a without a full-cache score)
    rows += [head, "|---|" + "---|" * len(budgets)]
    for name in policies:
        cells, entries = [], []
        for b in budgets:
            s = runs[b]["summary"].get(name)
            if s is None:
                cells.append("-")
                entries.append(None)
                continue
            ci = s.get("normalised_ci95")
            interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            value = "n/a" if s["normalised_score"] is None else f"{s['normalised_score']:.3f}"
            cells.append(f"{value}{interval} / {s['cache_fraction']:.2f}")
            entries.append({"normalised_score": s["normalised_score"], "normalised_ci95": ci,
                            "mean_score": s["mean_score"],
                            "cache_fraction": s["cache_fraction"], "vs_namm": s.get("vs_namm"),
                            "vs_namm_ci95": s.get("vs_namm_ci95")})
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        data["policies"][name] = entries
    header = [f"# {first['model']} on {first['benchmark']}: {', '.join(first['tasks'])}", "",
              first["schedule"]["description"], f"protocol: {first.get('protocol', 'whole-prompt')}", ""]
    return "\n".join(header + rows) + "\n", data


def plot_sweep(runs: dict[str, dict], path: Path) -> None:
    lines, points, full = {}, {}, None
    for b, results in runs.items():
        for name, s in results["summary"].items():
            if s["normalised_score"] is None:
                continue
            ci = tuple(s["normalised_ci95"]) if s.get("normalised_ci95") else None
            budgets = [v.get("budget") for v in results["policies"][name].values()]
            if name == "full":
                full = s["normalised_score"]
            elif any(v is not None for v in budgets):
                lines.setdefault(name, []).append((float(b), s["normalised_score"], ci))
            else:  # a threshold NAMM: its cache is its own, the same at every budget
                points[name] = (s["cache_fraction"], s["normalised_score"], ci)
    first = next(iter(runs.values()))
    budget_sweep(lines, "score / full cache's (95% paired interval)",
                 f"{first['model']}: {', '.join(first['tasks'])}", path, full=full, points=points)


def run_sweep(args, setups: dict, run_policies, write_one) -> int:
    """Each budget in turn (`setups`: budget -> its validated policy setup) into the same folder."""
    out = Path(args.out_dir)
    runs = {}
    for b in setups:
        results = run_policies(policy_setup.one_budget(args, b), setups[b])
        write_one(results, out / f"budget-{b}")
        runs[b] = results
    table, data = sweep_table(runs)
    write_text_atomic(out / "sweep.md", table)
    write_json_atomic(out / "sweep.json", json.loads(json.dumps(data)))
    plot_sweep(runs, out / "sweep.png")
    print(table)
    print(f"wrote {out / 'sweep.md'}, {out / 'sweep.json'} and {out / 'sweep.png'}")
    return 0
