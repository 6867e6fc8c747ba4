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
    """One forest per evaluation: a row per policy, its score / the full cache's with its paired 95% interval,
    the cache fraction it kept (and the budget it was given) written beside; the full cache at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.plots import ForestRow, forest_axes, save_figure

    cols = min(2, len(panels))
    n_rows = -(-len(panels) // cols)
    height = max(len(p.rows) for p in panels) * 0.36 + 1.3
    fig, axes = plt.subplots(n_rows, cols, figsize=(6.4 * cols, height * n_rows), squeeze=False)
    top = max([1.0] + [r.interval[1] if r.interval else r.normalised for p in panels for r in p.rows
                       if r.normalised is not None])
    for ax, panel in zip(axes.flat, panels):
        rows = [ForestRow(r.policy, r.normalised, r.interval, r.cache_fraction, r.budget) for r in panel.rows]
        forest_axes(ax, rows, "score / full cache's on the same items (95% paired interval)", reference=1.0)
        ax.set_xlim(0, top * 1.05)  # one scale for every panel
        ax.set_title(panel.name, fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
