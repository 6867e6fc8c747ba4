"""What a fitness returns, and the interface the generation loop calls (higher is better).

A fitness object may be stateful across a generation: `begin_generation` draws the generation's
prompts (shared by every member) before any member is evaluated. Every rank of a distributed run
holds its own fitness object and calls these methods in the same order; `calibrate` and
`evaluate_heldout` are collective (all ranks call them), `evaluate` is per member. The fitnesses
(evolve/lm_fitness.py, evolve/toy.py) import this module; evolve/fitness.py picks one by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.namm import NAMM


@dataclass(frozen=True)
class Evaluation:
    fitness: float
    cache_fraction: float = float("nan")  # kept / processed tokens, mean over prompts (nan: not applicable)


class Fitness(Protocol):
    def calibrate(self, namm: NAMM) -> None:
        """Set `namm`'s frozen normalisation statistics (called once, at generation 0)."""

    def begin_generation(self, stage_index: int, generation: int) -> None:
        """Draw the prompts of global generation `generation` of stage `stage_index`."""

    def evaluate(self, namm: NAMM) -> Evaluation:
        """Fitness of one member on the current generation's prompts."""

    def evaluate_heldout(self, namm: NAMM, stage_index: int) -> Evaluation:
        """Fitness of `namm` on the stage's held-out prompts (collective over ranks)."""
