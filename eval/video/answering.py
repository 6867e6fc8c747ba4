"""Run a video model over benchmark items: decode frames, ask, score. Missing videos are counted, and so
are videos that cannot be decoded (a corrupt or truncated file counts like a missing one).

`reply_fn(frames, item)` returns the model's reply text; for MLVU it is the text generated after
the answer prefix "Best option:(" (or "Answer:" with answer_format "words"), for LongVideoBench the full reply. The model (and any memory
policy around it) lives entirely in `reply_fn`.
"""
from __future__ import annotations

import random
from typing import Callable, Iterable

import numpy as np

from . import longvideobench as lvb
from . import mlvu
from .frames import DecodeStats, UnreadableVideo


def run_mlvu(items: Iterable[mlvu.MLVUItem], reply_fn: Callable[[np.ndarray, mlvu.MLVUItem], str], n_frames: int,
             stats: DecodeStats | None = None, log: Callable[[str], None] | None = None,
             answer_format: str = "letter") -> list[dict]:
    rows = []
    for item in items:
        try:
            frames = mlvu.load_frames(item, n_frames, stats)
        except (FileNotFoundError, UnreadableVideo, RuntimeError) as e:  # decord's errors are RuntimeErrors
            if log:
                log(f"missing or unreadable video for {item.id}: {e}")
            rows.append(mlvu.score(item, None))
            continue
        rows.append(mlvu.score(item, reply_fn(frames, item), answer_format))
    return rows


def run_lvb(items: Iterable[lvb.LVBItem], reply_fn: Callable[[np.ndarray, list, lvb.LVBItem], str], max_frames: int,
            with_subtitles: bool = False, seed: int = 0, stats: DecodeStats | None = None,
            log: Callable[[str], None] | None = None) -> list[dict]:
    """`reply_fn(frames, parts, item)`: `parts` is the official interleaved input (see longvideobench.prompt_parts)."""
    rng = random.Random(seed)
    rows = []
    for item in items:
        try:
            frames, times = lvb.load_frames(item, max_frames, stats)
        except (FileNotFoundError, UnreadableVideo, RuntimeError) as e:  # decord's errors are RuntimeErrors
            if log:
                log(f"missing or unreadable video for {item.id}: {e}")
            rows.append(lvb.score(item, None, rng))
            continue
        parts = lvb.prompt_parts(item, times, with_subtitles)
        rows.append(lvb.score(item, reply_fn(frames, parts, item), rng))
    return rows
