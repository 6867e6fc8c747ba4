"""Accuracy tables: overall and grouped by record fields."""
from __future__ import annotations

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
