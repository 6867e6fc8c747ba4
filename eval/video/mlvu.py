"""MLVU (dev) multiple-choice tasks: loading, official prompt, frames, scoring, M-Avg.

Layout (as released): `<data>/json/<k>_<task>.json` and `<data>/video/<k>_<task>/<video>`; a folder
holding the json files directly also works, and videos may sit directly in the video folder.
Prompt and check follow the benchmark's reference evaluation (VideoChat2 template): a system
line, "Question: ...\\nOptions:\\n(A) ...", "\\nOnly give the best option.", and the reply is
generated after the answer prefix "Best option:("; the option is the reply text before the first
")" and must equal the answer letter. M-Avg = mean of the per-task accuracies.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .accuracy import accuracy
from .choices import letter, mlvu_extract
from .frames import DecodeStats, mlvu_indices, open_video, read_frames, video_info
from core.errors import MissingFileError

from .jsonio import check_candidates, read_record_list

MC_TASKS = ("plotQA", "needle", "ego", "count", "order", "anomaly_reco", "topic_reasoning")

SYSTEM = (
    "Carefully watch this video and pay attention to every detail. Based on your observations, "
    "select the best option that accurately addresses the question.\n"
)
QUESTION_SUFFIX = "\nOnly give the best option."
ANSWER_PREFIX = "Best option:("

WORDS_ANSWER_PREFIX = "Answer:"  # --answer-format words: the question alone, answered with an option's text
UNANSWERABLE = "@"  # the reference code's letter for an answer missing from the candidates

REQUIRED = {"video": str, "question": str, "candidates": list, "answer": str}


@dataclass
class MLVUItem:
    task: str
    index: int
    video: str
    question: str
    candidates: list[str]
    answer_text: str
    answer: str  # letter
    video_file: Path
    duration: float | None
    record: dict = field(repr=False)

    @property
    def id(self) -> str:
        return f"{self.task}/{self.index}"


def task_name(json_path: Path) -> str:
    """'1_plotQA.json' -> 'plotQA'."""
    return re.sub(r"^\d+_", "", json_path.stem)


def json_dir_of(data_dir: Path) -> Path:
    return data_dir / "json" if (data_dir / "json").is_dir() else data_dir


def find_video(video_dir: Path, json_stem: str, video: str) -> Path:
    """<video_dir>/<json stem>/<video> when present, else <video_dir>/<video>."""
    nested = video_dir / json_stem / video
    return nested if nested.exists() else video_dir / video


def load_task(json_path: Path, video_dir: Path) -> list[MLVUItem]:
    records = read_record_list(json_path, REQUIRED)
    task = task_name(json_path)
    items = []
    for i, r in enumerate(records):
        check_candidates(json_path, i, r["candidates"], 2, 5)
        # Two released needle records have an answer that is not among the candidates; the
        # reference check then compares against the letter '@' (chr(ord('A') - 1)), so they can
        # never be answered correctly. Kept as is for comparable numbers.
        in_cands = r["answer"] in r["candidates"]
        items.append(
            MLVUItem(
                task=task,
                index=i,
                video=r["video"],
                question=r["question"],
                candidates=list(r["candidates"]),
                answer_text=r["answer"],
                answer=letter(r["candidates"].index(r["answer"])) if in_cands else UNANSWERABLE,
                video_file=find_video(video_dir, json_path.stem, r["video"]),
                duration=float(r["duration"]) if isinstance(r.get("duration"), (int, float)) else None,
                record=r,
            )
        )
    return items


def load(
    data_dir: str | Path,
    tasks: tuple[str, ...] | None = MC_TASKS,
    json_dir: str | Path | None = None,
    video_dir: str | Path | None = None,
) -> list[MLVUItem]:
    """Items of the chosen tasks (None: every json file in the folder), in file order."""
    data_dir = Path(data_dir)
    jdir = Path(json_dir) if json_dir else json_dir_of(data_dir)
    vdir = Path(video_dir) if video_dir else data_dir / "video"
    files = sorted(jdir.glob("*.json"), key=lambda p: (int(m[1]) if (m := re.match(r"(\d+)_", p.name)) else 1 << 30, p.name))
    if not files:
        raise MissingFileError(f"{jdir}: no MLVU annotation json files")
    if tasks is not None:
        names = {task_name(p): p for p in files}
        missing = [t for t in tasks if t not in names]
        if missing:
            raise MissingFileError(f"{jdir}: no annotation file for task(s) {missing}")
        files = [names[t] for t in tasks]
    items: list[MLVUItem] = []
    for p in files:
        items += load_task(p, vdir)
    return items


def question_block(question: str, candidates) -> str:
    """'Question: ...\\nOptions:\\n(A) ...\\n(D) ...' followed by the 'Only give the best option.' line."""
    q = f"Question: {question}\nOptions:\n"
    q += "".join(f"({letter(i)}) {c}\n" for i, c in enumerate(candidates))
    return q.rstrip() + QUESTION_SUFFIX


def question_text(item: MLVUItem) -> str:
    return question_block(item.question, item.candidates)


def words_question_text(question: str) -> str:
    """The question without its options (--answer-format words): the reply must be an option's text."""
    return f"Question: {question}"


def words_pred(item: MLVUItem, reply: str) -> str | None:
    """The letter of the option whose text the reply starts with (as a whole word, case ignored; the longest
    such option), or None when it starts with none (wrong; a reply "B" is not option B in this format)."""
    text = reply.strip()
    matches = [(len(c), i) for i, c in enumerate(item.candidates)
               if re.match(re.escape(c.strip()) + r"(?!\w)", text, re.IGNORECASE)]
    return letter(max(matches)[1]) if matches else None


def reference_prompt(item: MLVUItem, video_placeholder: str = "<VideoHere>") -> str:
    """The full prompt string of the reference evaluation (VideoChat2 '###' conversation)."""
    sep = "###"
    return (
        SYSTEM + sep
        + f"Human: <Video>{video_placeholder}</Video>\n" + sep
        + "Human: " + question_text(item) + "\n" + sep
        + "Assistant: " + ANSWER_PREFIX
    )


def load_frames(item: MLVUItem, n_frames: int, stats: DecodeStats | None = None) -> np.ndarray:
    """n frames by MLVU's rule; FileNotFoundError when the video is missing."""
    reader = open_video(item.video_file)
    total, _ = video_info(reader)
    return read_frames(reader, mlvu_indices(total, n_frames), stats)


ANSWER_FORMATS = ("letter", "words")


def score(item: MLVUItem, reply: str | None, answer_format: str = "letter") -> dict:
    """One result row; `reply` is the text generated after 'Best option:(' (letter, MLVU's protocol) or after
    'Answer:' (words). None marks a missing video."""
    row = {"id": item.id, "task": item.task, "answer": item.answer}
    if reply is None:
        return {**row, "missing": True, "pred": None, "correct": False}
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format {answer_format!r}: expected one of {ANSWER_FORMATS}")
    pred = mlvu_extract(reply) if answer_format == "letter" else words_pred(item, reply)
    return {**row, "missing": False, "reply": reply, "pred": pred, "correct": pred == item.answer}


def summarize(rows: list[dict], chance: dict[str, float] | None = None) -> dict:
    """Per-task accuracy and M-Avg (macro mean over every task), a missing or unreadable video counted as a
    wrong answer (as LongVideoBench's acc_missing_as_wrong): a task's cell and M-Avg always agree. Each task
    also reports its missing count and the accuracy over the answered items alone."""
    tasks: dict[str, list[dict]] = {}
    for r in rows:
        tasks.setdefault(r["task"], []).append(r)
    per_task = {}
    for t, rs in tasks.items():
        answered = [r for r in rs if not r["missing"]]
        per_task[t] = {
            "num": len(rs),
            "num_missing": len(rs) - len(answered),
            "acc": accuracy(bool(r["correct"]) and not r["missing"] for r in rs),
            "correct": [bool(r["correct"]) and not r["missing"] for r in rs],  # per item, in order (paired intervals)
        }
        if len(answered) < len(rs):
            per_task[t]["acc_answered"] = accuracy(r["correct"] for r in answered) if answered else None
    return {
        "per_task": per_task,
        "m_avg": float(np.mean([v["acc"] for v in per_task.values()])) if per_task else 0.0,
        "num": len(rows),
        "num_missing": sum(v["num_missing"] for v in per_task.values()),
        "missing_videos": sorted({r["id"] for r in rows if r["missing"]}),
    }


def missing_note(policies: dict) -> list[str]:
    """Table lines naming, per policy and task, the videos that were missing or unreadable (counted wrong)."""
    lines = []
    for name, s in policies.items():
        counts = [f"{t} {v['num_missing']} of {v['num']}" for t, v in sorted(s.get("per_task", {}).items())
                  if v.get("num_missing")]
        if counts:
            lines.append(f"{name}: missing or unreadable videos, counted wrong: {', '.join(counts)}")
    return lines


def chance_by_task(items: list[MLVUItem]) -> dict[str, float]:
    """Expected accuracy of a uniform random choice, per task."""
    out: dict[str, list[float]] = {}
    for it in items:
        out.setdefault(it.task, []).append(1.0 / len(it.candidates))
    return {t: float(np.mean(v)) for t, v in out.items()}
