"""Write the built-in generated long-video benchmark in MLVU's annotation format.

    python -m zoo.video.make_builtin --out .cache/video_builtin --n-train 4000 --n-test 400

Layout: <out>/<split>/json/<k>_<task>.json and <out>/<split>/video/<split>_<i>.mp4, plus
<out>/builtin.json with the generation settings. Every video carries one question of each type.
Deterministic from --seed (each split has its own random stream).
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from eval.video.jsonio import write_json_atomic

from .mp4 import write_mp4
from .render import draw
from .scenes import TASK_FILES, TASKS, VideoSpec, make_video

DEFAULTS = {"segments": 32, "frames_per_segment": 4, "fps": 8, "size": 64}


def render_video(spec: VideoSpec, size: int) -> np.ndarray:
    frames = [draw(*(seg or (None, None)), size) for seg in spec.segments]
    return np.repeat(np.stack(frames), spec.frames_per_segment, axis=0)


def make_split(out: Path, split: str, n: int, seed: int, segments: int, frames_per_segment: int, fps: int, size: int, log=None) -> None:
    rng = random.Random(f"namm-x-video-{seed}-{split}")
    records: dict[str, list[dict]] = {t: [] for t in TASKS}
    t0 = time.time()
    for i in range(n):
        spec, questions = make_video(rng, f"{split}_{i:05d}.mp4", segments, frames_per_segment, fps)
        write_mp4(out / split / "video" / spec.name, render_video(spec, size), fps=fps)
        for t in TASKS:
            records[t].append(questions[t])
        if log and (i + 1) % 500 == 0:
            log(f"{split}: {i + 1}/{n} videos, {time.time() - t0:.0f}s")
    for t in TASKS:
        write_json_atomic(out / split / "json" / TASK_FILES[t], records[t])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-train", type=int, default=4000, help="training videos (one question per type each)")
    ap.add_argument("--n-test", type=int, default=400, help="test videos")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--segments", type=int, default=DEFAULTS["segments"])
    ap.add_argument("--frames-per-segment", type=int, default=DEFAULTS["frames_per_segment"])
    ap.add_argument("--fps", type=int, default=DEFAULTS["fps"])
    ap.add_argument("--size", type=int, default=DEFAULTS["size"], help="frame width = height (even)")
    a = ap.parse_args(argv)
    if a.size % 2 or a.size < 16:
        ap.error("--size must be even and at least 16")
    settings = {k: getattr(a, k) for k in ("seed", "segments", "frames_per_segment", "fps", "size")}
    for split, n in (("train", a.n_train), ("test", a.n_test)):
        if n > 0:
            make_split(a.out, split, n, log=lambda m: print(m, file=sys.stderr, flush=True), **settings)
    write_json_atomic(a.out / "builtin.json", {**settings, "n_train": a.n_train, "n_test": a.n_test, "tasks": list(TASKS)})
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
