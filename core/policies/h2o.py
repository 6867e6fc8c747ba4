from core.policies.base import BudgetPolicy, protect_last

STATE = "h2o_accumulated"


class H2O(BudgetPolicy):
    """Heavy hitters (attention accumulated over all queries) plus a recent window
    (Zhang et al. 2023). `recent_ratio` of the budget goes to the window."""

    name = "h2o"
    observes = True

    def __init__(self, budget=0.5, recent_ratio: float = 0.5, **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.recent_ratio = float(recent_ratio)

    def observe(self, mem, probs, rows_left):
        if STATE not in mem.state:
            mem.state[STATE] = probs.new_zeros(probs.shape[0], probs.shape[1], mem.observed)
        mem.state[STATE][..., : probs.shape[-1]] += probs.sum(dim=2)

    def scores(self, mem):
        n_recent = int(self.budget.tokens(mem.processed) * self.recent_ratio)
        return protect_last(mem.state[STATE], n_recent)
