"""The per-generation JSONL log and its plots (fitness and cache fraction per generation)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from core.atomic import write_bytes_atomic, write_text_atomic
from eval.lm.jsonl import read_jsonl

LOG_FILE = "log.jsonl"


def read_log(run_dir: Path, before_generation: int | None = None) -> list[dict]:
    """Rows of the log, keeping only generations < `before_generation` (rows a killed run wrote after
    its last commit are dropped on resume)."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return []
    rows = []
    for _, row in read_jsonl(path):
        if before_generation is None or row.get("generation", 0) < before_generation:
            rows.append(row)
    return rows


def write_log(run_dir: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(_finite(row)) + "\n" for row in rows)
    write_text_atomic(Path(run_dir) / LOG_FILE, text)


def _finite(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}


def plot_log(run_dir: Path, rows: list[dict]) -> None:
    """fitness.png (mean/min/max of the population, held-out fitness of the mean) and cache_fraction.png."""
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(gens, [_num(r["fitness_min"]) for r in rows], [_num(r["fitness_max"]) for r in rows],
                    alpha=0.25, label="population min-max")
    ax.plot(gens, [_num(r["fitness_mean"]) for r in rows], label="population mean")
    held = [(r["generation"], r["heldout_fitness"]) for r in rows if r.get("heldout_fitness") is not None]
    if held:
        ax.plot(*zip(*held), "o-", label="mean of the distribution, held-out")
    _finish(fig, ax, rows, "fitness (score / full-cache score)", Path(run_dir) / "fitness.png")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(gens, [_num(r["cache_fraction_mean"]) for r in rows], label="population mean")
    held = [(r["generation"], r["heldout_cache_fraction"]) for r in rows if r.get("heldout_cache_fraction") is not None]
    if held:
        ax.plot(*zip(*held), "o-", label="mean of the distribution, held-out")
    _finish(fig, ax, rows, "cache fraction (kept / processed)", Path(run_dir) / "cache_fraction.png")
    plt.close("all")


def _num(value):
    return float("nan") if value is None else value


def _stage_lines(ax, rows):
    for prev, row in zip(rows, rows[1:]):
        if row["stage"] != prev["stage"]:
            ax.axvline(row["generation"] - 0.5, color="gray", linestyle=":", linewidth=1)


def _finish(fig, ax, rows, ylabel: str, path: Path) -> None:
    _stage_lines(ax, rows)
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())
