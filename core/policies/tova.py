from core.policies.base import BudgetPolicy

STATE = "tova_last_row"


class TOVA(BudgetPolicy):
    """Keeps the tokens the most recent query attends to most (Oren et al. 2024), per KV head."""

    name = "tova"
    observes = True

    def observe(self, mem, probs, rows_left):
        mem.state[STATE] = probs[:, :, -1, :].clone()

    def scores(self, mem):
        return mem.state[STATE]
