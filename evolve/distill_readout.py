"""A NAMM-X readout fitted to a dense target: the oracle, the attention the gold answer pays to each token.

`python -m evolve.distill --config <a namm_x evolution config> --teacher oracle --out DIR` comes here. Each
training prompt of the config's last stage runs under the full cache on the config's schedule (every `n_up`
tokens and at the prompt's end). At every update the readout's features of the tokens then cached are
recorded, and nothing is evicted; then the gold answer is fed (teacher forcing) and the attention its tokens
pay to every prompt token is summed over the answer's tokens and averaged over the KV heads (the head mode
`shared` ranks tokens by head-averaged signals). Each record's target is that oracle attention on its
tokens, ranked within the record (0 lowest, 1 highest), the scale the features are on.

The linear readout `score = f . w + b` is the ridge least-squares fit of that rank on the features (closed
form). It starts CMA-ES as `init_from` (`init_readout: null`) or is evaluated as it is. What it recovers is
measured on held-out records (a fifth of the prompts, never fitted): the share of the oracle's top `budget`
tokens that the readout's top `budget` keeps (newest token kept, as top-k keeps it), beside each baseline
readout's share on the same records.

`--teacher kvzip` fits the same readout to KVzip's scores instead (`core.policies.kvzip`): each prompt is one
context, prefilled whole (the query-agnostic protocol with the prompt as its context), reconstructed as
KVzip reconstructs it, and recorded once at its end, where KVzip's update would compress it. The target is
KVzip's score of each token averaged over the KV heads (the head mode `shared` keeps one set), ranked within
the record. It asks whether the attention signals the readout reads can stand in for KVzip's second forward.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.memory import LayerMemory
from core.namm import NAMM
from core.namm_x import SIGNALS, baseline_readout, rank01, readout_scores, unflatten_readout
from core.policies.base import MemoryPolicy, Schedule
from core.policies.kvzip import KVzip

RIDGE = 1e-3  # relative to the mean diagonal of F^T F: enough to fix collinear flags, too small to bias


def check_student(student: NAMM, teacher: str) -> None:
    if student.namm_x is None or student.config.head_mode != "shared":
        raise ValueError(f"the {teacher} readout fit needs a NAMM-X config (features: namm_x) with head_mode shared")


class OracleRecorder(MemoryPolicy):
    """Keeps everything; records the student's features at each update, then, while the answer is fed
    (`answering` set by the driver), the attention the answer pays to each token."""

    observes = True

    def __init__(self, student: NAMM) -> None:
        check_student(student, "oracle")
        super().__init__(schedule=student.schedule)
        self.student = student
        self.answering = False
        self.records: list[tuple[int, torch.Tensor]] = []  # (layer, [P, F] features of the P cached tokens)
        self.oracle: dict[int, torch.Tensor] = {}  # layer -> [V] attention from the answer's tokens

    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        if not self.answering:
            self.student.observe(mem, probs, rows_left)
            return
        mass = probs[0].float().sum(dim=1).mean(dim=0)  # [V]: summed over answer rows, averaged over KV heads
        seen = self.oracle.get(mem.layer_idx)
        if seen is None or seen.shape[0] < mass.shape[0]:
            grown = mass.new_zeros(mass.shape[0])
            if seen is not None:
                grown[: seen.shape[0]] = seen
            seen = grown
        seen[: mass.shape[0]] += mass
        self.oracle[mem.layer_idx] = seen

    def select(self, mem: LayerMemory) -> None:
        if not self.answering and self.student.namm_x.ready(mem):
            self.records.append((mem.layer_idx, self.student.features(mem)[0, 0].float().clone()))
            self.student.namm_x.after_update(mem)
        return None

    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(features [P, F], ranked oracle target [P]) per record; nothing is evicted, so slot i is token i."""
        out = []
        for layer, feats in self.records:
            target = self.oracle[layer][: feats.shape[0]]
            out.append((feats, rank01(target)))
        return out


class KVzipRecorder(MemoryPolicy):
    """Keeps everything; the student observes the context as it is prefilled, KVzip scores it from its
    reconstruction, and the one update at the context's end records (features [P, F], KVzip's score [P])."""

    observes = True
    replays_context = True

    def __init__(self, student: NAMM, n_context: int, teacher: KVzip | None = None) -> None:
        check_student(student, "KVzip")
        super().__init__(schedule=Schedule(n_context + 1, True))  # no update inside the context
        self.student, self.teacher = student, teacher or KVzip()
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []

    # the reconstruction's settings, read by adapters.hf.kvzip, are the teacher's
    n_sink = property(lambda self: self.teacher.n_sink)
    chunk_size = property(lambda self: self.teacher.chunk_size)
    prev_postfix_size = property(lambda self: self.teacher.prev_postfix_size)

    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        self.student.observe(mem, probs, rows_left)

    def observe_replay(self, mem: LayerMemory, scores: torch.Tensor, start: int, end: int) -> None:
        self.teacher.observe_replay(mem, scores, start, end)

    def select(self, mem: LayerMemory) -> None:
        feats = self.student.features(mem)[0, 0].float().clone()
        target = self.teacher.scores(mem)[0].mean(dim=0)  # [P]: KV heads averaged
        self.records.append((feats, rank01(target)))
        self.teacher.after_update(mem)
        self.student.namm_x.after_update(mem)
        return None


@torch.no_grad()
def record_prompt_kvzip(model, prompt, student: NAMM, replay_prompt, exact: bool = False):
    """One training prompt as one KVzip context: its (features, target) pair per layer."""
    from adapters.hf.generation import greedy_generate

    n = prompt.ids.shape[1]
    recorder = KVzipRecorder(student, n)
    greedy_generate(model, prompt.ids, recorder, max_new_tokens=1, exact=exact, context_end=n,
                    replay_prompt=replay_prompt)
    return recorder.records


@torch.no_grad()
def record_prompt(model, prompt, student: NAMM, exact: bool = False) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One training prompt under the recorder: its (features, target) pairs."""
    from adapters.hf.attach import attach
    from adapters.hf.generation import prefill
    from adapters.hf.teacher_forcing import answer_after_prompt

    if prompt.answer_ids is None or prompt.answer_ids.numel() < 2:
        return []  # the answer's first token is predicted from the prompt alone: no answer row to read
    recorder = OracleRecorder(student)
    device = next(model.parameters()).device
    with attach(model, recorder, exact=exact) as session:
        cache, last = prefill(model, session, prompt.ids.to(device))
        recorder.answering = True
        answer_after_prompt(model, session, cache, last, prompt.answer_ids)
    return recorder.pairs()


def fit_linear(pairs) -> torch.Tensor:
    """The flat linear readout [w (F), b] minimising the squared error to the targets, with a small ridge."""
    x = torch.cat([f for f, _ in pairs]).double()
    y = torch.cat([t for _, t in pairs]).double()
    design = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    gram = design.T @ design
    ridge = RIDGE * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype)
    ridge[-1, -1] = 0.0  # the bias is not shrunk
    return torch.linalg.solve(gram + ridge, design.T @ y).float()


def top_recall(scores: torch.Tensor, target: torch.Tensor, budget: float) -> float:
    """Share of the target's top ceil(budget x P) tokens among the scores' top as many (newest kept by both)."""
    p = scores.shape[0]
    k = max(1, math.ceil(budget * p))
    if k >= p:
        return 1.0
    newest = torch.zeros(p, dtype=torch.bool)
    newest[-1] = True
    pick = lambda s: set(torch.topk(s.masked_fill(newest, float("inf")), k).indices.tolist())  # noqa: E731
    return len(pick(scores) & pick(target)) / k


def recall_table(readouts: dict[str, torch.Tensor], pairs, names, hidden: int, budgets) -> dict:
    """Mean top-budget recall of the oracle per readout and budget over `pairs`."""
    out = {}
    for label, flat in readouts.items():
        params = unflatten_readout(flat, len(names), hidden)
        out[label] = {f"{b:g}": float(np.mean([top_recall(readout_scores(f, params), t, b) for f, t in pairs]))
                      for b in budgets}
    return out


def baseline_readouts(names, hidden: int) -> dict[str, torch.Tensor]:
    return {b: baseline_readout(names, hidden, b) for b in SIGNALS}


def distill_linear_readout(model, prompts, student: NAMM, seed: int = 0, exact: bool = False,
                           budgets=(0.5, 0.25), progress: bool = True, compare: dict | None = None,
                           replay_prompt=None) -> dict:
    """Record every prompt, fit the readout on four fifths of the prompts, set it on `student`, and report the
    target's top-budget recall on the held-out fifth for it, each baseline readout and `compare` (label ->
    flat readout of the same features, e.g. a shipped NAMM-X's). The target is the oracle, or KVzip's scores
    when `replay_prompt` (adapters.hf.kvzip.replay_prompt) is given."""
    from tqdm import tqdm

    if replay_prompt is None:
        record, desc = (lambda p: record_prompt(model, p, student, exact)), "oracle runs"
    else:
        record, desc = (lambda p: record_prompt_kvzip(model, p, student, replay_prompt, exact)), "kvzip runs"
    per_prompt = [record(p) for p in tqdm(prompts, desc=desc, disable=not progress)]
    order = np.random.default_rng(seed).permutation(len(prompts))
    n_held = max(1, len(prompts) // 5) if len(prompts) > 1 else 0
    held = [pair for i in order[:n_held] for pair in per_prompt[i]]
    train = [pair for i in order[n_held:] for pair in per_prompt[i]]
    if not train:
        raise ValueError("no records to fit: the prompts never reached an update, or their answers have one token")
    linear = fit_linear(train)
    flat = torch.zeros(student.config.n_params)  # with hidden units: their output weights 0, the linear part fitted
    flat[: linear.numel()] = linear
    student.set_params(flat)
    names = student.config.feature_names
    readouts = {"fitted": flat, **baseline_readouts(names, student.config.readout_hidden), **(compare or {})}
    return {"prompts": len(prompts), "heldout_prompts": n_held, "records": len(train) + len(held),
            "weights": dict(zip((*names, "bias"), (round(v, 4) for v in linear.tolist()))),
            "recall_train": recall_table(readouts, train, names, student.config.readout_hidden, budgets),
            "recall_heldout": recall_table(readouts, held, names, student.config.readout_hidden, budgets)
            if held else None}
