"""Option letters and the official answer-extraction rules of LongVideoBench and MLVU."""
from __future__ import annotations

import random
import re

LETTERS = "ABCDE"

# Phrases removed from a reply before the first capital A-E is taken (LongVideoBench rule,
# as used by the benchmark authors' lmms-eval task).
LVB_ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)


def letter(i: int) -> str:
    if not 0 <= i < len(LETTERS):
        raise ValueError(f"option index {i} is outside 0..{len(LETTERS) - 1}")
    return LETTERS[i]


def lvb_extract(reply: str, n_choices: int, rng: random.Random | None = None) -> tuple[str, bool]:
    """LongVideoBench: (letter, parsed). The first capital A-E after removing the answer phrases.

    When the reply has more than 10 words and no A-E, or no A-E at all, the official rule assigns
    a random choice; `parsed` is then False (pass a seeded `rng` for reproducible scores).
    """
    s = reply.strip()
    for prefix in LVB_ANSWER_PREFIXES:
        s = s.replace(prefix, "")
    choices = LETTERS[:n_choices]
    match = re.search(r"[ABCDE]", s)
    if match is None:  # covers the official 'more than 10 words and no letter' case too
        return (rng or random).choice(choices), False
    return match[0], True


def mlvu_extract(reply: str) -> str:
    """MLVU: the reply continues the answer prefix "Best option:(", so the option is the text
    before the first ")" (the whole reply when there is none)."""
    reply = reply.strip()
    if ")" in reply:
        reply = reply[: reply.index(")")]
    return reply


def mlvu_is_correct(reply: str, answer_letter: str) -> bool:
    """MLVU's check: the extracted option must equal the answer letter exactly."""
    return mlvu_extract(reply) == answer_letter
