"""Accuracy tables: overall and grouped by record fields."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable


def accuracy(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0


def grouped(results: list[dict], field: str) -> dict[str, dict]:
    """{group value: {"num": n, "acc": fraction correct}} for results carrying `field` and `correct`."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in results:
        groups[str(r[field])].append(bool(r["correct"]))
    return {k: {"num": len(v), "acc": accuracy(v)} for k, v in sorted(groups.items())}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (nan, nan without items)."""
    if n == 0:
        return (math.nan, math.nan)
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
