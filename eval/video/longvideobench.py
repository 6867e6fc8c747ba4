"""LongVideoBench (validation set with answers): loading, official prompt, frames, subtitles, scoring.

Data folder layout (as released): `<data>/lvb_val.json`, `<data>/videos/<video_path>`,
`<data>/subtitles/<subtitle_path>`. The prompt follows the benchmark's reference loader:
interleaved frames (and, optionally, subtitles placed by their mid time), then
"Question: ...", one line per option "A. ...", and the answer instruction. Replies are parsed by
the official rule (first capital A-E after removing answer phrases; random choice when none).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from .accuracy import accuracy, grouped
from .choices import letter, lvb_extract
from .frames import DecodeStats, lvb_indices, open_video, read_frames, video_info
from .jsonio import AnnotationError, check_candidates, read_json, read_record_list

ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."

REQUIRED = {
    "video_id": str,
    "question": str,
    "candidates": list,
    "correct_choice": int,
    "duration": (int, float),
    "duration_group": (int, str),
    "question_category": str,
    "video_path": str,
    "subtitle_path": str,
    "starting_timestamp_for_subtitles": (int, float),
}


@dataclass(frozen=True)
class FrameRef:
    """A place for frame `index` (position in the sampled frames) in an interleaved prompt."""

    index: int


Part = Union[str, FrameRef]


@dataclass
class LVBItem:
    id: str
    question: str
    candidates: list[str]
    answer: str  # letter
    duration: float
    duration_group: str
    question_category: str
    video_file: Path
    subtitle_file: Path
    subtitle_offset: float
    record: dict = field(repr=False)


def load(data_dir: str | Path, annotation: str = "lvb_val.json") -> list[LVBItem]:
    data_dir = Path(data_dir)
    path = data_dir / annotation
    records = read_record_list(path, REQUIRED)
    items = []
    for i, r in enumerate(records):
        check_candidates(path, i, r["candidates"], 2, 5)
        if not 0 <= r["correct_choice"] < len(r["candidates"]):
            raise AnnotationError(f"{path}: record {i} field 'correct_choice' = {r['correct_choice']} is out of range")
        items.append(
            LVBItem(
                id=str(r.get("id", f"{r['video_id']}_{i}")),
                question=r["question"],
                candidates=list(r["candidates"]),
                answer=letter(r["correct_choice"]),
                duration=float(r["duration"]),
                duration_group=str(r["duration_group"]),
                question_category=r["question_category"],
                video_file=data_dir / "videos" / r["video_path"],
                subtitle_file=data_dir / "subtitles" / r["subtitle_path"],
                subtitle_offset=float(r["starting_timestamp_for_subtitles"]),
                record=r,
            )
        )
    return items


def question_lines(item: LVBItem) -> list[str]:
    """The official text after the visual part: question, options "A. ...", instruction."""
    lines = ["Question: " + item.question]
    lines += [f"{letter(i)}. {c}" for i, c in enumerate(item.candidates)]
    lines.append(ANSWER_INSTRUCTION)
    return lines


def load_frames(item: LVBItem, max_frames: int, stats: DecodeStats | None = None) -> tuple[np.ndarray, list[float]]:
    """Frames by the official rule and their timestamps (s). Raises FileNotFoundError if the video is missing."""
    reader = open_video(item.video_file)
    _, fps = video_info(reader)
    idx = lvb_indices(item.duration, fps, max_frames)
    frames = read_frames(reader, idx, stats)
    return frames, [i / fps for i in idx]


def _timestamp_to_seconds(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def read_subtitles(item: LVBItem) -> list[tuple[float, float, str]]:
    """(start, end, text) relative to the video start; both released subtitle formats."""
    subs = read_json(item.subtitle_file)
    if not isinstance(subs, list):
        raise AnnotationError(f"{item.subtitle_file}: expected a json list of subtitles")
    out = []
    for k, sub in enumerate(subs):
        try:
            if "timestamp" in sub:
                start, end = sub["timestamp"]
                if not isinstance(end, float):
                    end = item.duration
                text = sub["text"]
            else:
                start, end = _timestamp_to_seconds(sub["start"]), _timestamp_to_seconds(sub["end"])
                text = sub["line"]
        except (KeyError, TypeError, ValueError) as e:
            raise AnnotationError(f"{item.subtitle_file}: subtitle {k} is malformed ({e!r})") from None
        out.append((start - item.subtitle_offset, end - item.subtitle_offset, text))
    return out


def interleave(frame_times: list[float], subtitles: list[tuple[float, float, str]]) -> list[Part]:
    """Frames and subtitles in time order, by the reference rule: a frame goes before a subtitle
    whose mid time it does not pass; a subtitle is kept only if some frame lies strictly inside
    its span (spans shorter than 1 s widen to 1 s around the mid time)."""
    parts: list[Part] = []
    cur = 0
    for start, end, text in subtitles:
        mid = (start + end) / 2
        while cur < len(frame_times) and frame_times[cur] <= mid:
            parts.append(FrameRef(cur))
            cur += 1
        if end - start < 1:
            start, end = mid - 0.5, mid + 0.5
        if any(start < t < end for t in frame_times):
            parts.append(text)
    parts += [FrameRef(i) for i in range(cur, len(frame_times))]
    return parts


def prompt_parts(item: LVBItem, frame_times: list[float], with_subtitles: bool) -> list[Part]:
    """The full official input: (interleaved) frames, then question, options and instruction."""
    if with_subtitles:
        parts = interleave(frame_times, read_subtitles(item))
    else:
        parts = [FrameRef(i) for i in range(len(frame_times))]
    return parts + question_lines(item)


def render_text(parts: list[Part], frame_placeholder: str = "<image>") -> str:
    """Join parts with newlines, one placeholder per frame (lmms-eval's interleaved rendering)."""
    return "\n".join(frame_placeholder if isinstance(p, FrameRef) else p for p in parts)


def score(item: LVBItem, reply: str | None, rng: random.Random) -> dict:
    """One result row. `reply=None` marks a missing video: counted, not scored as an answer."""
    row = {
        "id": item.id,
        "duration_group": item.duration_group,
        "question_category": item.question_category,
        "answer": item.answer,
    }
    if reply is None:
        return {**row, "missing": True, "pred": None, "parsed": False, "correct": False}
    pred, parsed = lvb_extract(reply, len(item.candidates), rng)
    return {**row, "missing": False, "reply": reply, "pred": pred, "parsed": parsed, "correct": pred == item.answer}


def summarize(rows: list[dict]) -> dict:
    """Accuracy over answered items (overall, by duration group, by category), plus missing counts.
    `acc_missing_as_wrong` counts missing videos as wrong answers."""
    answered = [r for r in rows if not r["missing"]]
    return {
        "num": len(rows),
        "num_missing": len(rows) - len(answered),
        "num_unparsed": sum(1 for r in answered if not r["parsed"]),
        "acc": accuracy(r["correct"] for r in answered),
        "acc_missing_as_wrong": accuracy(r["correct"] for r in rows),
        "by_duration_group": grouped(answered, "duration_group"),
        "by_question_category": grouped(answered, "question_category"),
        "missing_videos": sorted({r["id"] for r in rows if r["missing"]}),
    }
