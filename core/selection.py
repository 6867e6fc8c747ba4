"""Turning per-token scores into the per-head indices to keep (ascending, rectangular)."""
from __future__ import annotations

import torch


def keep_top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, H, k] of the k highest scores per head, in cache order. Equal scores are kept newest
    first, so the kept set depends only on the scores' order (torch.topk breaks ties its own way)."""
    k = max(1, min(int(k), scores.shape[-1]))
    order = torch.sort(scores, dim=-1, stable=True).indices  # ascending; among equals, older first
    return order[..., -k:].sort(dim=-1).values


def protect_newest(scores: torch.Tensor) -> torch.Tensor:
    scores = scores.clone()
    scores[..., -1] = torch.finfo(scores.dtype).max
    return scores


def threshold_min_over_heads(scores: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """The reference rule: every head evicts as many tokens as the head (and batch item) with the
    fewest scores below `threshold`; each head drops its lowest-scoring ones. Newest always kept."""
    marked = protect_newest(scores)
    n_below = (marked < threshold).sum(dim=-1)
    n_drop = int(n_below.min())
    return keep_top(marked, scores.shape[-1] - n_drop)
