from core import signals
from core.policies.base import BudgetPolicy, protect_last

STATE = signals.WINDOW


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
        self.observed_rows = self.window

    def observe(self, mem, probs, rows_left):
        signals.observe_window(mem, probs, rows_left, self.window)

    def scores(self, mem):
        return protect_last(signals.pooled_window(mem, self.window, self.kernel), self.window)

    def after_update(self, mem):
        signals.reset_window(mem)
