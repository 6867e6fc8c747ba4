from core.policies.base import BudgetPolicy

STATE = "tova_last_row"


class TOVA(BudgetPolicy):
    """Keeps the tokens the most recent query attends to most (Oren et al. 2024), per KV head."""

    name = "tova"
    observes = True

    def observe(self, mem, probs, rows_left):
        last = probs.new_zeros(probs.shape[0], probs.shape[1], mem.observed)
        last[..., : probs.shape[-1]] = probs[:, :, -1, :]
        mem.state[STATE] = last

    def scores(self, mem):
        return mem.state[STATE]
