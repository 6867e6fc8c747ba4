import torch

from core import signals
from core.policies.base import BudgetPolicy


class Recency(BudgetPolicy):
    """StreamingLLM: the first `n_sink` tokens (attention sinks) plus the most recent ones."""

    name = "recency"

    def __init__(self, budget=0.5, n_sink: int = 4, **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.n_sink = int(n_sink)

    def scores(self, mem):
        sinks = signals.sink_flag(mem, self.n_sink).bool()
        return torch.where(sinks, torch.finfo(torch.float32).max, signals.positions(mem))
