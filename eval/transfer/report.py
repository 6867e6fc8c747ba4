"""One table per modality from the results JSON each evaluation CLI writes: per policy its score, its
score normalised by the full cache's on the same items with a paired 95% bootstrap interval, its
cache fraction and its time."""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

from eval.lm.bootstrap import normalised_interval


@dataclass
class Row:
    policy: str
    score: float
    normalised: float | None
    interval: tuple[float, float] | None
    cache_fraction: float | None
    seconds: float | None  # per item (language, video) or per episode (control)
    budget: float | None = None  # what a baseline was given


@dataclass
class Panel:
    name: str  # e.g. "language, 1000 tokens, whole prompt"
    modality: str  # language | control | video
    score_label: str
    rows: list[Row]
    notes: list[str]

    def to_json(self) -> dict:
        return {**asdict(self), "rows": [asdict(r) for r in self.rows]}


def _ratio(value, reference):
    return value / reference if reference else None


def lm_panel(name: str, results: dict) -> Panel:
    rows = []
    for policy, per_task in results["policies"].items():
        s = results["summary"][policy]
        ci = s.get("normalised_ci95")
        budgets = [v.get("budget") for v in per_task.values() if v.get("budget") is not None]
        rows.append(Row(policy, s["mean_score"], s["normalised_score"], tuple(ci) if ci else None, s["cache_fraction"],
                        float(np.mean([v["seconds_per_item"] for v in per_task.values()])),
                        float(np.mean(budgets)) if budgets else None))
    notes = [f"{t}: the full cache scores {v['full']:.1f}, not above chance ({v['chance']:.1f})"
             for t, v in results.get("tasks_at_chance", {}).items()]
    return Panel(name, "language", "mean score over tasks (0-100)", rows, notes)


def rl_panel(name: str, results: dict) -> Panel:
    protocols = results["protocols"]
    full = protocols.get("full")
    rows = []
    for policy, r in protocols.items():
        interval = None
        if full and len(full["scores"]) == len(r["scores"]):
            interval = normalised_interval({"env": r["scores"]}, {"env": full["scores"]}, ["env"])
        seconds = r["seconds"] / r["episodes"] if r.get("episodes") else None
        rows.append(Row(policy, r["score_mean"], _ratio(r["score_mean"], full["score_mean"] if full else None),
                        interval, r.get("cache_fraction"), seconds, r.get("budget")))
    return Panel(name, "control", "D4RL normalised score", rows,
                 ["normalised: mean score / the full cache's, episodes paired by seed"])


def video_panel(name: str, results: dict) -> Panel:
    policies, chance = results["policies"], results.get("chance", {})
    full = policies.get("full")
    tasks = sorted({t for s in policies.values() for t in s["per_task"]})
    above = [t for t in tasks if full and full["per_task"][t]["acc"] > chance.get(t, 0) + 1e-9]
    notes = []
    if full and len(above) < len(tasks):
        notes.append("normalised over the question types the full cache answers above chance: "
                     + (", ".join(above) or "none") + f" (of {', '.join(tasks)})")
    rows = []
    for policy, s in policies.items():
        normalised = interval = None
        if full and above:
            normalised = float(np.mean([_ratio(s["per_task"][t]["acc"], full["per_task"][t]["acc"]) for t in above]))
            per_item = {t: s["per_task"][t].get("correct") for t in above}
            full_items = {t: full["per_task"][t].get("correct") for t in above}
            if all(v is not None for v in per_item.values()) and all(v is not None for v in full_items.values()):
                interval = normalised_interval(per_item, full_items, above)
        rows.append(Row(policy, 100 * s["m_avg"], normalised, interval, s.get("cache_fraction"),
                        s.get("seconds_per_item"), s.get("budget")))
    return Panel(name, "video", "mean accuracy over question types (%)", rows, notes)


def _fmt(value, spec, missing="n/a"):
    return missing if value is None else format(value, spec)


def markdown(panels: list[Panel], header: list[str]) -> str:
    out = io.StringIO()
    for line in header:
        out.write(line + "\n")
    for panel in panels:
        out.write(f"\n## {panel.name}\n\n")
        time_label = "s/episode" if panel.modality == "control" else "s/item"
        out.write(f"| policy | {panel.score_label} | normalised [95% interval] | cache fraction | budget given "
                  f"| {time_label} |\n|---|---|---|---|---|---|\n")
        for r in panel.rows:
            ci = f" [{r.interval[0]:.3f}, {r.interval[1]:.3f}]" if r.interval else ""
            out.write(f"| {r.policy} | {r.score:.1f} | {_fmt(r.normalised, '.3f')}{ci} | "
                      f"{_fmt(r.cache_fraction, '.2f')} | {_fmt(r.budget, '.2f', '-')} | {_fmt(r.seconds, '.2f')} |\n")
        for note in panel.notes:
            out.write(f"\n{note}\n")
    return out.getvalue()


def plot_panels(panels: list[Panel], path, title: str) -> None:
    """One panel per evaluation: normalised score against cache fraction, a point per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.plots import MARKERS, save_figure

    cols = min(3, len(panels))
    n_rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.6 * cols, 3.8 * n_rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for i, r in enumerate(panel.rows):
            if r.normalised is None or r.cache_fraction is None:
                continue
            err = None
            if r.interval:
                err = [[max(0.0, r.normalised - r.interval[0])], [max(0.0, r.interval[1] - r.normalised)]]
            ax.errorbar(r.cache_fraction, r.normalised, yerr=err, fmt=MARKERS[i % len(MARKERS)], capsize=3,
                        markersize=7, alpha=0.85, label=r.policy, color="black" if r.policy == "namm" else None)
        ax.set_title(panel.name, fontsize=9)
        ax.set_xlim(0, 1.05)
        ax.set_xlabel("cache fraction (kept / processed)")
        ax.set_ylabel("score / full cache's")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
