import torch.nn.functional as F

from core.policies.base import BudgetPolicy, protect_last

STATE = "snapkv_window_attention"


class SnapKV(BudgetPolicy):
    """Attention from the last `window` queries before an update, pooled over neighbouring
    tokens (Li et al. 2024); the window itself is always kept.

    As its authors and kvpress define it, only the tokens before the window are pooled, and the zero
    padding at their edges counts in the average (revision 2; revision 1 pooled every column and left
    the padding out, which raised the first and last few tokens' scores)."""

    name = "snapkv"
    observes = True
    revision = 2

    def __init__(self, budget=0.5, window: int = 32, kernel: int = 7, **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.window, self.kernel = int(window), int(kernel)

    def observe(self, mem, probs, rows_left):
        if STATE not in mem.state:
            mem.state[STATE] = probs.new_zeros(probs.shape[0], probs.shape[1], mem.observed)
        rows = probs.shape[2]
        first_in_window = max(0, rows + rows_left - self.window)
        if first_in_window < rows:
            mem.state[STATE][..., : probs.shape[-1]] += probs[:, :, first_in_window:].sum(dim=2)

    def scores(self, mem):
        observed = mem.state[STATE]
        b, h, p = observed.shape
        before = p - self.window
        pooled = observed.clone()
        if before > 0:
            pooled[..., :before] = F.avg_pool1d(observed[..., :before].reshape(b * h, 1, before), self.kernel,
                                                stride=1, padding=self.kernel // 2).view(b, h, before)
        return protect_last(pooled, self.window)

    def after_update(self, mem):
        if STATE in mem.state:
            mem.state[STATE].zero_()  # the next update looks at its own window
