from core import signals
from core.policies.base import BudgetPolicy, protect_last

STATE = signals.ACCUMULATED


class H2O(BudgetPolicy):
    """Heavy hitters (attention accumulated over all queries) plus a recent window
    (Zhang et al. 2023). `recent_ratio` of the budget goes to the window."""

    name = "h2o"
    observes = True

    def __init__(self, budget=0.5, recent_ratio: float = 0.5, **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.recent_ratio = float(recent_ratio)

    def observe(self, mem, probs, rows_left):
        signals.observe_accumulated(mem, probs)

    def recent_window(self, mem) -> int:
        return int(self.budget.tokens(mem.processed) * self.recent_ratio)

    def scores(self, mem):
        return protect_last(mem.state[STATE], self.recent_window(mem))
