"""Frames as language-model tokens: what the SmolLM2 LLaVA's projector is trained to emit, and what its
language model is fine-tuned to read.

Each frame is `tokens_per_frame` tokens: the shape's colour and name (" red circle"), then " black" (the
background) to fill the frame's slots; an empty frame is all " black". The prompt is SmolLM2's chat
template around MLVU's system prompt and question block, with the video where `<video>` stands, and
MLVU's answer prefix, so the answer is read from the next-token logits of the option letters exactly as
`eval.video` reads it.
"""
from __future__ import annotations

from eval.video import mlvu
from eval.video.choices import letter

from .render import COLOURS, SHAPES

VIDEO_PLACEHOLDER = "<video>"
BACKGROUND = " black"


class FrameText:
    def __init__(self, tokenizer, tokens_per_frame: int):
        self.tokenizer = tokenizer
        enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
        self.background = enc(BACKGROUND)
        if len(self.background) != 1:
            raise ValueError(f"{BACKGROUND!r} must be one token, got {self.background}")
        self.colour = {c: enc(" " + c) for c in COLOURS}
        self.shape = {s: enc(" " + s) for s in SHAPES}
        longest = max(map(len, self.colour.values())) + max(map(len, self.shape.values()))
        if tokens_per_frame < longest:
            raise ValueError(f"tokens_per_frame {tokens_per_frame} < {longest}, the longest frame caption")
        self.tokens_per_frame = tokens_per_frame

    def frame_ids(self, segment: tuple[str, str] | None) -> list[int]:
        ids = [] if segment is None else self.colour[segment[1]] + self.shape[segment[0]]
        return ids + self.background * (self.tokens_per_frame - len(ids))

    def video_ids(self, segments, frames_per_segment: int) -> list[int]:
        return [t for s in segments for _ in range(frames_per_segment) for t in self.frame_ids(s)]


def _around_video(tokenizer, question_text: str, answer_prefix: str) -> tuple[list[int], list[int]]:
    """Token ids before and after the video in SmolLM2's chat template with MLVU's system prompt."""
    user = f"{VIDEO_PLACEHOLDER}\n{question_text}"
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": mlvu.SYSTEM.strip()}, {"role": "user", "content": user}],
        tokenize=False, add_generation_prompt=True) + answer_prefix
    before, after = text.split(VIDEO_PLACEHOLDER)
    return (tokenizer.encode(before, add_special_tokens=False), tokenizer.encode(after, add_special_tokens=False))


def prompt_parts(tokenizer, question: str, candidates) -> tuple[list[int], list[int]]:
    """Token ids before and after the video for an MLVU question, answer prefix included."""
    return _around_video(tokenizer, mlvu.question_block(question, candidates), mlvu.ANSWER_PREFIX)


def letter_ids(tokenizer, n_options: int) -> list[int]:
    ids = [tokenizer.encode(letter(i), add_special_tokens=False) for i in range(n_options)]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"option letters are not single tokens: {ids}")
    return [i[0] for i in ids]


def word_prompt_parts(tokenizer, question: str) -> tuple[list[int], list[int]]:
    """Token ids before and after the video for a question asked without options, answered in words
    after "Answer:" (what `eval.video --answer-format words` asks)."""
    return _around_video(tokenizer, mlvu.words_question_text(question),
                         mlvu.WORDS_ANSWER_PREFIX)


def word_ids(tokenizer, candidates) -> tuple[list[int], list[int]]:
    """(tokens all candidates start with, the first token where each differs) for the candidates as words
    after "Answer:" (" red" is one token; " 3" is " " then "3")."""
    seqs = [tokenizer.encode(" " + c, add_special_tokens=False) for c in candidates]
    k = 0
    while all(len(s) > k + 1 for s in seqs) and len({s[k] for s in seqs}) == 1:
        k += 1
    ids = [s[k] for s in seqs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"candidates {list(candidates)} are not told apart by one token")
    return seqs[0][:k], ids
