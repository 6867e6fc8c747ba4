"""The plots evaluations draw.

- `forest`: a matched comparison (every policy on the same items, at one budget rule): a row per policy, its
  score with its interval, the cache fraction it kept written beside the row. Policies at the same cache
  fraction no longer stack on one x.
- `budget_sweep`: runs at several budgets: score against the budget given, a line per policy; the full
  cache as a dashed line and a policy without a budget (the NAMM) as a point at its cache fraction.
The files keep their names (score_vs_cache.png, accuracy_vs_cache.png, transfer.png) so links stay valid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MARKERS = "osD^v<>PX*"
HIGHLIGHT = "namm"  # drawn in black, its label in bold


@dataclass
class ForestRow:
    policy: str
    value: float | None  # None: not available (e.g. no normalised score), written as n/a
    interval: tuple[float, float] | None = None
    cache_fraction: float | None = None
    budget: float | None = None  # what a baseline was given, written beside the cache fraction where it differs


def forest_axes(ax, rows: list[ForestRow], xlabel: str, reference: float | None = None,
                reference_label: str = "full cache") -> None:
    """Draw a forest on one axis: rows top to bottom in the given order, the value as a marker with its
    interval as a horizontal bar, and "cache 0.45" (and the budget given, if any) at the right edge."""
    from matplotlib.transforms import blended_transform_factory

    n = len(rows)
    right = blended_transform_factory(ax.transAxes, ax.transData)
    for i, row in enumerate(rows):
        y = n - 1 - i
        color = "black" if row.policy == HIGHLIGHT else f"C{i % 10}"
        if row.value is not None:
            err = None
            if row.interval is not None:
                err = [[max(0.0, row.value - row.interval[0])], [max(0.0, row.interval[1] - row.value)]]
            ax.errorbar(row.value, y, xerr=err, fmt=MARKERS[i % len(MARKERS)], color=color, markersize=7,
                        capsize=3, elinewidth=1.6)
        else:
            ax.text(0.5, y, "n/a", transform=right, ha="center", va="center", fontsize=8, color="0.4")
        cache = "" if row.cache_fraction is None else f"cache {row.cache_fraction:.2f}"
        if row.budget is not None and f"{row.budget:.2f}" != f"{row.cache_fraction:.2f}":
            cache += f" (given {row.budget:.2f})"  # matched budgets land within a token of it
        ax.text(1.02, y, cache, transform=right, ha="left", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(reference, color="0.5", linestyle="--", linewidth=1)
        ax.text(reference, n - 0.45, f"{reference_label} ", fontsize=7, color="0.4", va="bottom", ha="right")
    ends = [e for r in rows if r.value is not None for e in (r.interval or (r.value, r.value))]
    ends += [reference] if reference is not None else []
    if ends:  # from zero (scores and ratios are not negative here), a margin past the last interval
        ax.set_xlim(min(0.0, min(ends)), max(ends) * 1.05 if max(ends) > 0 else 1.0)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r.policy for r in reversed(rows)], fontsize=9)
    for label in ax.get_yticklabels():
        if label.get_text() == HIGHLIGHT:
            label.set_fontweight("bold")
    ax.set_ylim(-0.7, n - 0.3 + (0.4 if reference is not None else 0))
    ax.set_xlabel(xlabel, fontsize=9)
    ax.grid(axis="x", alpha=0.3)


def forest(rows: list[ForestRow], xlabel: str, title: str, path: Path, reference: float | None = None,
           reference_label: str = "full cache") -> None:
    """One matched comparison as a forest plot, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.42 * len(rows)))
    forest_axes(ax, rows, xlabel, reference, reference_label)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def budget_sweep(lines: dict[str, list[tuple[float, float, tuple[float, float] | None]]], ylabel: str, title: str,
                 path: Path, full: float | None = None, points: dict[str, tuple[float, float, tuple | None]] | None = None,
                 xlabel: str = "budget given (fraction of processed tokens kept)") -> None:
    """`lines`: policy -> [(budget, score, interval or None)], one line each; `full`: the full cache's score
    (a dashed line); `points`: policy -> (cache fraction, score, interval) for policies without a budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if full is not None:
        ax.axhline(full, color="0.4", linestyle="--", linewidth=1, label="full cache")
    xs = [p[0] for pts in lines.values() for p in pts] + [p[0] for p in (points or {}).values()]
    right = min(1.02, max(xs, default=1.0) * 1.15 + 0.05)
    dodge = 0.012 * right  # policies at one budget side by side, so their intervals do not hide each other
    for i, (policy, pts) in enumerate(lines.items()):
        pts = sorted(pts)
        err = None
        if all(p[2] is not None for p in pts):
            err = [[p[1] - p[2][0] for p in pts], [p[2][1] - p[1] for p in pts]]
        shift = (i - (len(lines) - 1) / 2) * dodge
        ax.errorbar([p[0] + shift for p in pts], [p[1] for p in pts], yerr=err, fmt=MARKERS[i % len(MARKERS)] + "-",
                    color=f"C{i % 10}", markersize=6, capsize=3, alpha=0.9, label=policy)
    for policy, (x, y, interval) in (points or {}).items():
        err = None if interval is None else [[y - interval[0]], [interval[1] - y]]
        ax.errorbar(x, y, yerr=err, fmt="*", color="black" if policy == HIGHLIGHT else None, markersize=12,
                    capsize=3, label=f"{policy} (at its cache {x:.2f})")
    ax.set_xlim(0, right)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if lines or points or full is not None:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no normalised score (the full cache scored 0 on every task)", ha="center",
                transform=ax.transAxes, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (a reader never sees half a file) and close it."""
    import io

    import matplotlib.pyplot as plt

    from core.atomic import write_bytes_atomic

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    write_bytes_atomic(Path(path), buffer.getvalue())
