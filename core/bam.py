"""Backward Attention Memory (BAM): the token scorer of NAMM.

Each token attends to itself and to newer tokens of the same cache (a backward mask), and the
result modulates its own features before a linear score. All parameters live in one flat vector
in the reference layout: each weight stored (in, out) row-major, followed by its bias.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class BAMShape:
    n_features: int = 25
    hidden: int = 32

    @property
    def slices(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        d, h = self.n_features, self.hidden
        return {
            "w_qkv": (d * 3 * h, (d, 3 * h)),
            "b_qkv": (3 * h, (3 * h,)),
            "w_o": (h * 2 * d, (h, 2 * d)),
            "b_o": (2 * d, (2 * d,)),
            "w_out": (d, (d, 1)),
            "b_out": (1, (1,)),
        }

    @property
    def n_params(self) -> int:
        return sum(n for n, _ in self.slices.values())

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        if flat.numel() != self.n_params:
            raise ValueError(f"BAM with {self.n_features} features and hidden {self.hidden} has "
                             f"{self.n_params} parameters, got a vector of {flat.numel()}")
        out, start = {}, 0
        for name, (n, shape) in self.slices.items():
            out[name] = flat[start : start + n].view(shape)
            start += n
        return out


def bam_scores(features: torch.Tensor, params: dict[str, torch.Tensor], hidden: int) -> torch.Tensor:
    """Scores [N, S] for features [N, S, d] (cache order: oldest first)."""
    d = features.shape[-1]
    qkv = features @ params["w_qkv"] + params["b_qkv"]
    q, k, v = qkv.split(hidden, dim=-1)
    # Attending to newer tokens is causal attention on the reversed sequence.
    o = F.scaled_dot_product_attention(
        q.flip(1).unsqueeze(1), k.flip(1).unsqueeze(1), v.flip(1).unsqueeze(1),
        is_causal=True, scale=1.0 / math.sqrt(hidden),
    ).squeeze(1).flip(1)
    y = o @ params["w_o"] + params["b_o"]
    res, mult = y[..., :d], y[..., d:]
    z = features * (1.0 + mult) + res
    return (z @ params["w_out"]).squeeze(-1) + params["b_out"]
