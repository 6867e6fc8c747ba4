"""A managed layer's rotary embedding, for policies that read queries before RoPE (`observes_queries`).

The attention function receives queries after RoPE. A policy that needs them before (Expected Attention
models the queries of future positions, so it must take the rotation of the observed ones out) gets them
through the inverse rotation: per position RoPE is a rotation of each pair of dimensions (times the
model's `attention_scaling`), so `q = (r * cos - rotate_half(r) * sin) / (cos^2 + sin^2)` recovers the query
`q` from its rotated `r`, to float rounding. That is one change in one place, the attention function, for
every model family; capturing queries before RoPE instead would need a per-family hook on the projection
(and on Gemma 3's query norm), as kvpress re-runs `q_proj` per family.

The rotary module is the model's own (`*RotaryEmbedding`), called with the layer's `layer_type` where it
takes one (Gemma 3). A model without one (GPT-2, the Decision Transformer) has no rotation: `None`, and the
queries are handed over as they are.
"""
from __future__ import annotations

import inspect

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LayerRotary:
    """`rotary(positions [n]) -> (cos, sin)`, each [n, D] float32: the layer's RoPE at those positions."""

    def __init__(self, module, layer_type: str | None = None) -> None:
        self.module = module
        self.layer_type = layer_type

    def __call__(self, positions: torch.Tensor):
        probe = torch.zeros(1, dtype=torch.float32, device=positions.device)
        extra = () if self.layer_type is None else (self.layer_type,)
        with torch.no_grad():
            cos, sin = self.module(probe, positions.view(1, -1).long(), *extra)
        return cos[0].float(), sin[0].float()


def rotary_modules(model) -> list:
    return [m for m in model.modules() if type(m).__name__.endswith("RotaryEmbedding")]


def layer_rotaries(model, attention_modules: dict[int, object]) -> dict[int, LayerRotary | None]:
    """Per managed layer index, its `LayerRotary` (None for a model without rotary embeddings)."""
    found = rotary_modules(model)
    if not found:
        return {i: None for i in attention_modules}
    if len(found) > 1:
        raise ValueError(f"{type(model).__name__} has {len(found)} rotary embeddings "
                         f"({', '.join(type(m).__name__ for m in found)}); a policy that reads queries before RoPE "
                         f"cannot tell which one a layer uses")
    rotary = found[0]
    takes_type = "layer_type" in inspect.signature(rotary.forward).parameters
    return {i: LayerRotary(rotary, getattr(m, "layer_type", None) if takes_type else None)
            for i, m in attention_modules.items()}


def unrotate(query: torch.Tensor, positions: torch.Tensor, rotary: LayerRotary | None) -> torch.Tensor:
    """`query` [B, H, rows, D] (after RoPE, at `positions` [rows]) before RoPE, in float32."""
    query = query.float()
    if rotary is None:
        return query
    cos, sin = rotary(positions)
    return (query * cos - rotate_half(query) * sin) / (cos * cos + sin * sin)
