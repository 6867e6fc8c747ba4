"""Full-cache accuracy of the tiny video model on an MLVU-format split (e.g. the built-in test split).

    python -m zoo.video.evaluate --model checkpoints/llava-video-tiny --data .cache/video_builtin/test --frames 32
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from eval.video import mlvu
from eval.video.answering import run_mlvu
from eval.video.frames import DecodeStats
from eval.video.jsonio import write_json_atomic

from .model import generate_reply, load_video_model


def tiny_reply_fn(model, processor, max_new_tokens: int = 4):
    def reply(frames, item: mlvu.MLVUItem) -> str:
        prompt = processor.chat_prompt(mlvu.SYSTEM, mlvu.question_text(item), mlvu.ANSWER_PREFIX)
        return generate_reply(model, processor, frames, prompt, max_new_tokens)

    return reply


def evaluate(model_dir: Path, data: Path, frames: int, limit: int | None = None) -> dict:
    model, processor = load_video_model(model_dir)
    items = mlvu.load(data, tasks=None)
    if limit:
        counts: dict[str, int] = {}
        kept = []
        for it in items:
            if counts.get(it.task, 0) < limit:
                kept.append(it)
                counts[it.task] = counts.get(it.task, 0) + 1
        items = kept
    stats = DecodeStats()
    t0 = time.time()
    rows = run_mlvu(items, tiny_reply_fn(model, processor), frames, stats, log=lambda m: print(m, file=sys.stderr))
    summary = mlvu.summarize(rows)
    summary["chance"] = mlvu.chance_by_task(items)
    summary["frames"] = frames
    summary["decode_frames_per_second"] = round(stats.frames_per_second, 1)
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("checkpoints/llava-video-tiny"))
    ap.add_argument("--data", type=Path, default=Path(".cache/video_builtin/test"))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--limit", type=int, default=None, help="at most this many items per task")
    ap.add_argument("--out", type=Path, default=None, help="write the summary json here")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    summary = evaluate(a.model, a.data, a.frames, a.limit)
    if a.out:
        write_json_atomic(a.out, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "missing_videos"}, indent=1))
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
