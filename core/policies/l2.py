from core import signals
from core.policies.base import BudgetPolicy


class L2Norm(BudgetPolicy):
    """Keeps the keys with the smallest L2 norm (Devoto et al. 2024; kvpress' Knorm)."""

    name = "l2"

    def scores(self, mem):
        return signals.negative_key_norm(mem)
