"""Decode video frames with decord, using each benchmark's own frame-index rule.

- `mlvu_indices`: MLVU's reference evaluation (segment midpoints over the whole video).
- `lvb_indices`: LongVideoBench's reference loader (stride int(duration*fps / n), from frame 0,
  with n = min(max_frames, int(duration))).
- `uniform_indices`: plain midpoints of n equal segments (for other uses).

`read_frames` returns uint8 RGB frames [T, H, W, 3]; `DecodeStats` accumulates frames per second.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


DENSE_RATIO = 8  # decode the whole span when at least 1 in DENSE_RATIO of its frames is wanted


@dataclass
class DecodeStats:
    frames: int = 0
    seconds: float = 0.0

    def add(self, frames: int, seconds: float) -> None:
        self.frames += frames
        self.seconds += seconds

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def mlvu_indices(total_frames: int, n: int) -> list[int]:
    """MLVU's rule: start 0, end = last frame, segment size (end-start)/n, index = int(start + seg/2 + round(seg*i))."""
    if total_frames < 1 or n < 1:
        raise ValueError(f"need total_frames >= 1 and n >= 1, got {total_frames}, {n}")
    end = total_frames - 1
    seg = float(end) / n
    return [int(seg / 2 + np.round(seg * i)) for i in range(n)]


def lvb_indices(duration: float, fps: float, max_frames: int) -> list[int]:
    """LongVideoBench's rule: n = min(max_frames, int(duration)); indices int(duration*fps / n) * i."""
    n = min(max_frames, int(duration))
    if n < 1:
        raise ValueError(f"duration {duration} s gives no frames to sample")
    valid = int(duration * fps)
    step = int(valid / n)
    return [step * i for i in range(n)]


def uniform_indices(total_frames: int, n: int) -> list[int]:
    """Midpoints of n equal segments of [0, total_frames)."""
    if total_frames < 1 or n < 1:
        raise ValueError(f"need total_frames >= 1 and n >= 1, got {total_frames}, {n}")
    edges = np.linspace(0, total_frames, n + 1)
    return [min(total_frames - 1, int((a + b) / 2)) for a, b in zip(edges[:-1], edges[1:])]


class UnreadableVideo(Exception):
    """A video file that exists but cannot be decoded (corrupt, truncated): counted like a missing one."""


def open_video(path: str | Path):
    """A decord VideoReader (one decoding thread); raises FileNotFoundError naming a missing file and
    UnreadableVideo naming a file decord cannot open."""
    import decord

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except RuntimeError as err:  # decord's DECORDError
        raise UnreadableVideo(f"{path}: cannot decode the video ({str(err).strip().splitlines()[-1][:200]})") from None


def read_frames(reader, indices: list[int], stats: DecodeStats | None = None) -> np.ndarray:
    """Frames at `indices` (clamped to the last frame) as uint8 [T, H, W, 3]."""
    last = len(reader) - 1
    idx = [min(max(0, int(i)), last) for i in indices]
    t0 = time.perf_counter()
    lo, hi = min(idx), max(idx)
    if len(idx) * DENSE_RATIO >= hi - lo + 1:
        # Dense sampling: one sequential decode of the span beats a seek per frame.
        span = reader.get_batch(list(range(lo, hi + 1))).asnumpy()
        frames = span[[i - lo for i in idx]]
    else:
        frames = reader.get_batch(idx).asnumpy()
    if stats is not None:
        stats.add(len(idx), time.perf_counter() - t0)
    return frames


def video_info(reader) -> tuple[int, float]:
    """(number of frames, average fps)."""
    return len(reader), float(reader.get_avg_fps())
