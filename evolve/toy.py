"""A toy fitness without a model: minus the mean squared distance of the parameters to a target.

Used by the tests and to try the loop in seconds (`fitness: toy` in a config). The best value is 0.
"""
from __future__ import annotations

import numpy as np

from core.namm import NAMM
from evolve.evaluation import Evaluation


class QuadraticFitness:
    def __init__(self, target: float = 0.05):
        self.target = float(target)

    def calibrate(self, namm: NAMM) -> None:
        pass

    def begin_generation(self, stage_index: int, generation: int) -> None:
        pass

    def value(self, params) -> float:
        x = np.asarray(params, dtype=np.float64)
        return -float(np.mean((x - self.target) ** 2))

    def evaluate(self, namm: NAMM) -> Evaluation:
        return Evaluation(self.value(namm.params.numpy()), 1.0)

    def evaluate_heldout(self, namm: NAMM, stage_index: int) -> Evaluation:
        return Evaluation(self.value(namm.params.numpy()), 1.0)
