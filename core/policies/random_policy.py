import torch

from core.policies.base import BudgetPolicy


class RandomEviction(BudgetPolicy):
    """Keeps a uniformly random subset: the floor any informed policy must beat."""

    name = "random"

    def __init__(self, budget=0.5, seed: int = 0, **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, mem):
        shape = mem.observed_positions().shape
        return torch.rand(shape, generator=self.generator).to(mem.keys.device)
