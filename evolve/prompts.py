"""Prompt sets for the LM fitness: the built-in generated tasks or LongBench files.

A prompt set is drawn deterministically from a seed label: training prompts from
("train", run seed, generation), held-out prompts from ("heldout", heldout_seed). For LongBench the
held-out samples are set aside from each task's file, so training draws never include them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class Prompt:
    task: str
    ids: torch.Tensor  # [1, length] token ids
    max_new_tokens: int
    score: Callable[[str], float]  # prediction -> [0, 1]
    answer_ids: torch.Tensor | None = None  # [n] tokens of the gold answer after the prompt (graded fitnesses)


def seed_label(*parts) -> str:
    return "/".join(str(p) for p in parts)


def continuation_ids(tokenizer, prompt_text: str, prompt_ids: torch.Tensor, answer: str) -> torch.Tensor:
    """Tokens of `answer` as they follow `prompt_text` (a space first unless the prompt ends in one, in
    an opening quote or in a CSV comma); tokenised together with the prompt when that leaves the prompt's
    tokens intact."""
    sep = "" if prompt_text[-1:] in (" ", "\n", '"', "'", ",") else " "
    joint = tokenizer(prompt_text + sep + answer, return_tensors="pt").input_ids[0]
    n = prompt_ids.shape[-1]
    if joint.shape[0] > n and torch.equal(joint[:n], prompt_ids.flatten()):
        return joint[n:]
    return tokenizer(sep + answer, add_special_tokens=False, return_tensors="pt").input_ids[0]


def _seed_int(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")


class BuiltinPrompts:
    """eval.lm.builtin_tasks items, rendered in their calibrated format."""

    name = "builtin"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def draw(self, task: str, n: int, length: int, label: str) -> list[Prompt]:
        from eval.lm.builtin_tasks import MAX_NEW_TOKENS, make_items, render, score_item

        prompts = []
        for item in make_items(task, n, length, label, self.tokenizer):
            text = render(item, self.tokenizer)
            ids = self.tokenizer(text, return_tensors="pt").input_ids
            answer = continuation_ids(self.tokenizer, text, ids, item.answers[0])
            prompts.append(Prompt(task, ids, MAX_NEW_TOKENS[task], lambda text, item=item: score_item(item, text),
                                  answer))
        return prompts

    def heldout(self, task: str, n: int, length: int, label: str) -> list[Prompt]:
        return self.draw(task, n, length, label)


class LongBenchPrompts:
    """LongBench `<data_dir>/<task>.jsonl`, middle-truncated to the stage's prompt length, without a chat
    template (as in the paper); `heldout_n` samples per task are reserved for the held-out evaluation."""

    name = "longbench"

    def __init__(self, tokenizer, data_dir, heldout_n: int, heldout_seed: int):
        if data_dir is None:
            raise ValueError("data 'longbench' needs data_dir (pass --data-dir with LongBench's <task>.jsonl files)")
        self.tokenizer, self.data_dir = tokenizer, data_dir
        self.heldout_n, self.heldout_seed = heldout_n, heldout_seed
        self._pools: dict = {}

    def _pool(self, task: str, length: int):
        if (task, length) not in self._pools:
            from eval.lm.loaders import load_longbench

            samples = load_longbench(self.data_dir, task, self.tokenizer, max_length=length)
            order = np.random.default_rng(_seed_int(seed_label("heldout", self.heldout_seed, task))).permutation(len(samples))
            held = min(self.heldout_n, max(0, len(samples) - 1))
            self._pools[(task, length)] = ([samples[i] for i in order[held:]], [samples[i] for i in order[:held]])
        return self._pools[(task, length)]

    def _prompts(self, task, samples) -> list[Prompt]:
        from eval.lm.longbench_metrics import sample_score

        out = []
        for s in samples:
            ids = self.tokenizer(s.prompt, return_tensors="pt").input_ids
            answer = continuation_ids(self.tokenizer, s.prompt, ids, s.answers[0]) if s.answers else None
            out.append(Prompt(task, ids, s.max_new_tokens,
                              lambda text, s=s: sample_score(task, text, s.answers, s.all_classes), answer))
        return out

    def draw(self, task: str, n: int, length: int, label: str) -> list[Prompt]:
        train, _ = self._pool(task, length)
        rng = np.random.default_rng(_seed_int(seed_label(label, task)))
        if n <= len(train):
            picked = rng.choice(len(train), size=n, replace=False)
        else:
            picked = rng.choice(len(train), size=n, replace=True)
        return self._prompts(task, [train[i] for i in picked])

    def heldout(self, task: str, n: int, length: int, label: str) -> list[Prompt]:
        _, held = self._pool(task, length)
        return self._prompts(task, held[:n])
