"""Low-rank adapters (LoRA) on the linear layers of a Hugging Face language model, kept apart from the
frozen weights so that only the adapters are trained and saved, and merged into the weights for use.

A wrapped layer computes  W x + (alpha / r) * B A x  with A [r, in] random and B [out, r] zero, so a new
adapter leaves the model's outputs unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.scale = alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None,
                        dtype=self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _wrapped(model: nn.Module):
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if isinstance(child, LoRALinear):
                yield module, child_name, child, f"{name}.{child_name}" if name else child_name


def add_lora(model: nn.Module, r: int = 16, alpha: float = 32.0, targets=TARGETS) -> list[str]:
    """Freeze every parameter of `model`, wrap its linear layers named in `targets`; returns their names."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, r, alpha))
                names.append(f"{name}.{child_name}" if name else child_name)
    if not names:
        raise ValueError(f"no linear layer named one of {targets} in {type(model).__name__}")
    return names


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    state = {}
    for _, _, layer, full in _wrapped(model):
        state[f"{full}.lora_a"] = layer.lora_a.detach().clone()
        state[f"{full}.lora_b"] = layer.lora_b.detach().clone()
    return state


def load_lora_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    layers = {full: layer for _, _, layer, full in _wrapped(model)}
    expected = {f"{k}.{p}" for k in layers for p in ("lora_a", "lora_b")}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        raise ValueError(f"adapter keys do not match the model: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for full, layer in layers.items():
            layer.lora_a.copy_(state[f"{full}.lora_a"])
            layer.lora_b.copy_(state[f"{full}.lora_b"])


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every adapter by a plain linear layer holding W + (alpha / r) B A (in place)."""
    for parent, child_name, layer, _ in list(_wrapped(model)):
        setattr(parent, child_name, layer.merged())
    return model
