from core import signals
from core.policies.base import BudgetPolicy

STATE = signals.LAST_ROW


class TOVA(BudgetPolicy):
    """Keeps the tokens the most recent query attends to most (Oren et al. 2024), as its authors define
    it: the last query's attention averaged over all heads of the layer, so every head keeps the same
    tokens (kvpress's TOVAPress computes the same)."""

    name = "tova"
    observes = True
    observed_rows = 1  # the newest query's attention, taken from the last row before each update

    def observe(self, mem, probs, rows_left):
        signals.observe_last_row(mem, probs)

    def scores(self, mem):
        # probs arrive averaged within each GQA group of equal size: their mean over KV heads is the
        # mean over every query head
        return mem.state[STATE].mean(dim=1, keepdim=True).expand_as(mem.state[STATE])


class TOVAPerHead(TOVA):
    """TOVA's rule scored separately for each KV head: heads keep different tokens."""

    name = "tova_per_head"

    def scores(self, mem):
        return mem.state[STATE]
