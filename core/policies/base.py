"""The interface every memory policy implements, NAMM and baselines alike.

A policy sees one layer's `LayerMemory` at a time. If `observes` is true, the adapter hands it
the attention probabilities of each processed block of queries over the observed tokens,
GQA-averaged to KV heads (`observe`); `observed_rows` says which of those rows it reads. Every `n_up` processed tokens (and, with
`update_at_prompt_end`, when a prompt ends) the adapter calls `select`, which returns the per-head
indices to keep (ascending, same count for every head) or None to keep everything. Both come from the
policy's `Schedule`; policies compared with each other share one. A policy that sets `observes_queries` also
gets each segment's queries before RoPE (`observe_queries`, Expected Attention).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.memory import LayerMemory


@dataclass(frozen=True)
class Schedule:
    """When a policy updates (and may evict): every `n_up` processed tokens and, with `at_prompt_end`,
    also when a prompt ends."""

    n_up: int = 512
    at_prompt_end: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.n_up, bool) or int(self.n_up) != self.n_up or self.n_up < 1:
            raise ValueError(f"n_up must be a positive number of tokens, got {self.n_up}")
        object.__setattr__(self, "n_up", int(self.n_up))
        object.__setattr__(self, "at_prompt_end", bool(self.at_prompt_end))

    def describe(self) -> str:
        return f"update every {self.n_up} tokens" + (" and at prompt end" if self.at_prompt_end else ", not at prompt end")


class MemoryPolicy:
    name = "policy"
    revision = 1  # raised when a rule changes what it keeps, so stored results made by the old rule are redone
    observes = False  # needs attention rows
    # Which query rows `observe` reads: None, every row; k, only the last k rows before each update (a row read
    # when fewer than k queries follow it before the update, as `rows_left` counts them). The attention
    # function may then compute probabilities for those rows only; what the policy keeps must not change.
    observed_rows: int | None = None
    observes_queries = False  # needs each segment's queries before RoPE (`observe_queries`)
    replays_context = False  # compresses a whole context after reconstructing it (kvzip; adapters.hf.kvzip)
    evicts = True  # False only for the full cache, which lets the adapter skip all bookkeeping

    def __init__(self, n_up: int | None = None, update_at_prompt_end: bool | None = None,
                 schedule: Schedule | None = None) -> None:
        """Either `schedule` (shared with the policies this one is compared to) or n_up and
        update_at_prompt_end (default 512 and False)."""
        if schedule is None:
            schedule = Schedule(512 if n_up is None else n_up, bool(update_at_prompt_end))
        elif n_up is not None or update_at_prompt_end is not None:
            raise ValueError("give a policy either a schedule or n_up / update_at_prompt_end, not both")
        self.schedule = schedule

    @property
    def n_up(self) -> int:
        return self.schedule.n_up

    @property
    def update_at_prompt_end(self) -> bool:
        return self.schedule.at_prompt_end

    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        """`probs` [B, H_kv, rows, V]: attention of a block of queries over the first V of the P observed
        tokens (the later ones are invisible to these rows); `rows_left`: queries still to come
        before the next update."""

    def observe_queries(self, mem: LayerMemory, queries: torch.Tensor, positions: torch.Tensor, rotary) -> None:
        """Called only if `observes_queries`, once per segment of new tokens, before `observe`: `queries`
        [B, H_q, rows, D] are the segment's queries of every query head before RoPE, `positions` [rows] their
        absolute positions, `rotary(positions) -> (cos, sin)` (each [n, D]) the layer's rotary embedding, so
        that `x * cos + rotate_half(x) * sin` rotates x to those positions (None for a model without RoPE)."""

    def select(self, mem: LayerMemory) -> torch.Tensor | None:
        return None

    def check_capacity(self, max_tokens: int | None) -> None:
        """Raise if this policy cannot run on a model whose context holds `max_tokens`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_up={self.n_up})"


class Budget:
    """How many tokens a baseline keeps: an int token count, or a float fraction in (0, 1] of the
    tokens processed so far (the size the full cache would have).

    A fraction is rounded up (`ceil(budget * processed)`): a baseline never keeps less than it was given.
    kvpress rounds its kept count down (`int(n * (1 - compression_ratio))`), so where the product is not
    whole ours keeps one token more (bench/kvpress_parity's ratio-0.3 run shows it)."""

    def __init__(self, value) -> None:
        if isinstance(value, str):
            text = value.strip()
            try:
                value = float(text[:-1]) / 100 if text.endswith("%") else (float(text) if "." in text else int(text))
            except ValueError:
                raise ValueError(f"budget must be a token count, a fraction in (0, 1] or a percentage, "
                                 f"got {text!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"budget must be a token count or a fraction in (0, 1], got {value!r}")
        if isinstance(value, float):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"budget fraction must be in (0, 1], got {value}")
        elif value < 1:
            raise ValueError(f"budget must be at least 1 token, got {value}")
        self.value = value

    @property
    def is_fraction(self) -> bool:
        return isinstance(self.value, float)

    def tokens(self, processed: int) -> int:
        if self.is_fraction:
            # rounded first: 101 / 308 * 308 is 101.00000000000001, which must not become 102 tokens
            return max(1, math.ceil(round(self.value * processed, 9)))
        return self.value

    def check_capacity(self, max_tokens: int | None) -> None:
        if not self.is_fraction and max_tokens is not None and self.value > max_tokens:
            raise ValueError(f"budget of {self.value} tokens is larger than the cache can ever hold "
                             f"({max_tokens} tokens, the model's maximum context)")

    def __repr__(self) -> str:
        return f"{self.value:.0%}" if self.is_fraction else f"{self.value} tokens"


class BudgetPolicy(MemoryPolicy):
    """A baseline that scores tokens and keeps the best `budget` of them per head.

    The newest token is always among them (`protect_newest`), whatever its score: the next query attends
    to it in the unmodified model, and the NAMM keeps it too. kvpress's score-based presses (KnormPress)
    do not protect it, which is where most of their kept sets differ from ours (README, kvpress parity)."""

    def __init__(self, budget=0.5, n_up: int | None = None, update_at_prompt_end: bool | None = None,
                 schedule: Schedule | None = None) -> None:
        super().__init__(n_up, update_at_prompt_end, schedule)
        self.budget = Budget(budget)

    def scores(self, mem: LayerMemory) -> torch.Tensor:
        """[B, H, P]: higher is kept first."""
        raise NotImplementedError

    def select(self, mem: LayerMemory) -> torch.Tensor | None:
        from core.selection import keep_top, protect_newest

        n_keep = self.budget.tokens(mem.processed)
        keep = None
        if n_keep < mem.observed:
            keep = keep_top(protect_newest(self.scores(mem).float()), n_keep)
        self.after_update(mem)
        return keep

    def after_update(self, mem: LayerMemory) -> None:
        """Hook for policies whose state covers only the span between two updates."""

    def check_capacity(self, max_tokens: int | None) -> None:
        self.budget.check_capacity(max_tokens)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(budget={self.budget}, n_up={self.n_up})"


def protect_last(scores: torch.Tensor, n: int) -> torch.Tensor:
    if n > 0:
        scores = scores.clone()
        scores[..., -n:] = torch.finfo(scores.dtype).max
    return scores
