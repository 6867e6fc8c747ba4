"""Random generated videos and their multiple-choice questions (MLVU record format).

A video is a sequence of segments (default 32 x 4 frames). Each segment is empty (black) or shows
one shape in one colour. Adjacent segments never show the same colour, so every run of a colour
is one appearance. Four question types, each answerable from one sampled frame per segment:
  needle      "What colour is the <shape>?"             (that shape appears exactly once)
  count       "How many times does a <colour> shape appear?"        (1 to 4 times)
  order       "What colour is the shape right after the <colour> <shape>?"  (target appears once)
  first_last  "What colour is the shape at the beginning/end of the video?"

Every question of a type has the same four options in the same order: the colours of
OPTION_COLOURS, or the counts 1-4 (videos use all six colours; the asked-for colour is one of the
four). The answer is drawn uniformly among the options, so chance is 25% per type. A fixed option
list spares a tiny model from matching shuffled option texts to letters, which it does not learn
from scratch in CPU minutes (see zoo/video/train.py); the question still has to be answered from
the right frames.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from .render import COLOURS, SHAPES

TASKS = ("needle", "count", "order", "first_last")
TASK_FILES = {t: f"{i + 1}_{t}.json" for i, t in enumerate(TASKS)}
COLOUR_NAMES = tuple(COLOURS)
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
OPTION_COLOURS = ("red", "green", "blue", "yellow")
OPTION_COUNTS = ("1", "2", "3", "4")


@dataclass
class VideoSpec:
    name: str
    segments: list[tuple[str, str] | None]  # (shape, colour) or None
    frames_per_segment: int
    fps: int

    @property
    def n_frames(self) -> int:
        return len(self.segments) * self.frames_per_segment

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


def random_segments(rng: random.Random, n: int, p_empty: float = 0.25) -> list[tuple[str, str] | None]:
    """Segments drawn from all shapes but one; that one (the needle) then replaces one shape."""
    needle = rng.choice(SHAPES)
    common = [sh for sh in SHAPES if sh != needle]
    segs: list[tuple[str, str] | None] = []
    prev_colour = None
    for _ in range(n):
        if rng.random() < p_empty:
            segs.append(None)
            prev_colour = None
            continue
        colour = rng.choice([c for c in COLOUR_NAMES if c != prev_colour])
        segs.append((rng.choice(common), colour))
        prev_colour = colour
    filled = [i for i, s in enumerate(segs) if s]
    if filled:
        i = rng.choice(filled)
        segs[i] = (needle, segs[i][1])
    return segs


def _obj(o: tuple[str, str]) -> str:
    return f"{o[1]} {o[0]}"


def _record(spec: VideoSpec, task: str, question: str, answer: str, options: tuple[str, ...]) -> dict:
    assert answer in options
    return {
        "video": spec.name,
        "duration": spec.duration,
        "question": question,
        "candidates": list(options),
        "answer": answer,
        "question_type": task,
    }


def _pick(rng: random.Random, questions: list[dict]) -> dict | None:
    return rng.choice(questions) if questions else None


def _needle(spec: VideoSpec, rng: random.Random) -> dict | None:
    return _pick(rng, every_question(spec, "needle"))


def _count(spec: VideoSpec, rng: random.Random, k: int | None = None) -> dict | None:
    k = k or rng.randint(1, len(OPTION_COUNTS))
    return _pick(rng, [q for q in every_question(spec, "count") if q["answer"] == str(k)])


def _order(spec: VideoSpec, rng: random.Random, colour: str | None = None) -> dict | None:
    colour = colour or rng.choice(OPTION_COLOURS)
    return _pick(rng, [q for q in every_question(spec, "order") if q["answer"] == colour])


def _first_last(spec: VideoSpec, rng: random.Random) -> dict | None:
    which = rng.choice(("beginning", "end"))
    return next((q for q in every_question(spec, "first_last") if f" at the {which} " in q["question"]), None)


def every_question(spec: VideoSpec, task: str) -> list[dict]:
    """Every question of `task` the video can answer, in a fixed order (segment, shape or colour order); the
    makers below draw one of them, training asks several per video (they share its prefix)."""
    segs = spec.segments
    if task == "count":
        counts = {c: sum(1 for s in segs if s and s[1] == c) for c in COLOUR_NAMES}
        return [_record(spec, "count", f"How many times does a {c} shape appear?", str(k), OPTION_COUNTS)
                for c, k in counts.items() if 1 <= k <= len(OPTION_COUNTS)]
    if task == "order":
        objs = [s for s in segs if s]
        return [_record(spec, "order", f"What colour is the shape right after the {_obj(segs[i])}?", segs[i + 1][1],
                        OPTION_COLOURS)
                for i in range(len(segs) - 1)
                if segs[i] and segs[i + 1] and objs.count(segs[i]) == 1 and segs[i + 1][1] in OPTION_COLOURS]
    if task == "needle":
        shapes = [s[0] for s in segs if s]
        found = [next(s for s in segs if s and s[0] == sh) for sh in SHAPES if shapes.count(sh) == 1]
        return [_record(spec, "needle", f"What colour is the {sh}?", c, OPTION_COLOURS) for sh, c in found
                if c in OPTION_COLOURS]
    ends = (("beginning", segs[0]), ("end", segs[-1]))
    return [_record(spec, "first_last", f"What colour is the shape at the {w} of the video?", seg[1], OPTION_COLOURS)
            for w, seg in ends if seg is not None and seg[1] in OPTION_COLOURS]


MAKERS = {"needle": _needle, "count": _count, "order": _order, "first_last": _first_last}


def make_video(rng: random.Random, name: str, n_segments: int, frames_per_segment: int, fps: int) -> tuple[VideoSpec, dict[str, dict]]:
    """A video whose segments allow a question of every type (resampled until they do). The answers
    of count and order are drawn before the video so that resampling does not skew them."""
    targets = {"count": (rng.randint(1, len(OPTION_COUNTS)),), "order": (rng.choice(OPTION_COLOURS),)}
    for _ in range(1000):
        spec = VideoSpec(name, random_segments(rng, n_segments), frames_per_segment, fps)
        questions = {t: MAKERS[t](spec, rng, *targets.get(t, ())) for t in TASKS}
        if all(q is not None for q in questions.values()):
            return spec, questions
    raise RuntimeError("could not generate a video that supports every question type")
