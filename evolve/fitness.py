"""The fitness a config names: the registry the generation loop calls (evolve/evaluation.py holds the
interface and what a fitness returns, so the fitnesses never import this module back)."""
from __future__ import annotations

from evolve.evaluation import Evaluation, Fitness

__all__ = ["Evaluation", "Fitness", "make_fitness"]


def make_fitness(config, run_dir, dist) -> Fitness:
    """The fitness a config names: "toy" (no model) or "lm" (a language model on prompt tasks)."""
    if config.fitness == "toy":
        from evolve.toy import QuadraticFitness  # no model: a toy run never imports transformers

        return QuadraticFitness(config.toy_target)
    from evolve.lm_fitness import LMFitness

    return LMFitness(config, run_dir, dist)
