"""Token features besides the spectrogram: the age embedding and the frozen normalisation."""
from __future__ import annotations

import torch


def age_embedding(ages: torch.Tensor, dims: int = 8, base: float = 50000.0) -> torch.Tensor:
    """`[sin(age * w_k) | cos(age * w_k)]`, `w_k = base**(-k / (dims/2))`, computed in float64."""
    half = dims // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64, device=ages.device) / half)
    angles = ages.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).float()


class FeatureNormaliser:
    """`(x - mean) / max(std, eps)` with statistics gathered once and then frozen."""

    def __init__(self, n_features: int, eps: float = 1e-7) -> None:
        self.mean = torch.zeros(n_features)
        self.var = torch.ones(n_features)
        self.eps = eps
        self._sum = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.device, x.dtype)
        std = torch.clamp(torch.sqrt(self.var.to(x.device, x.dtype)), min=self.eps)
        return (x - mean) / std

    # Calibration: pooled over every value presented (heads, tokens, layers).
    def start_calibration(self) -> None:
        n = self.mean.numel()
        self._sum = torch.zeros(n, dtype=torch.float64)
        self._sumsq = torch.zeros(n, dtype=torch.float64)
        self._count = 0

    @property
    def calibrating(self) -> bool:
        return self._sum is not None

    def accumulate(self, x: torch.Tensor) -> None:
        flat = x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float64)
        self._sum += flat.sum(0)
        self._sumsq += (flat * flat).sum(0)
        self._count += flat.shape[0]

    def finish_calibration(self) -> int:
        if not self._count:
            raise RuntimeError("no features were seen during calibration: the calibration text is shorter than n_up")
        mean = self._sum / self._count
        var = torch.clamp(self._sumsq / self._count - mean * mean, min=0.0)
        self.mean, self.var = mean.float(), var.float()
        count, self._sum = self._count, None
        return count
