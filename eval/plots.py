"""The plot every evaluation draws: one marker per policy, score against cache fraction."""
from __future__ import annotations

from pathlib import Path

MARKERS = "osD^v<>PX*"


def score_vs_cache(points: dict[str, tuple[float, float, float | None]], ylabel: str, title: str, path: Path,
                   xlabel: str = "cache fraction (kept / processed tokens)") -> None:
    """`points`: policy -> (cache fraction, score, error bar or None). Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, (x, y, err)) in enumerate(points.items()):
        ax.errorbar(x, y, yerr=err, fmt=MARKERS[i % len(MARKERS)], markersize=7, capsize=3, alpha=0.85, label=name)
    finish_cache_axes(fig, ax, ylabel, title, path, xlabel)


def finish_cache_axes(fig, ax, ylabel: str, title: str, path: Path,
                      xlabel: str = "cache fraction (kept / processed tokens)") -> None:
    """Labels, the cache-fraction range, grid and legend of a score-against-cache plot; written as PNG."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
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
