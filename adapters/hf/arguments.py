"""Checks of the arguments `attach` and `greedy_generate` take: a wrong one is refused with a message that
names it, before anything runs (not a silent empty generation or an error deep inside the model)."""
from __future__ import annotations

import numbers

import torch

from core.errors import ArgumentTypeError, UserError
from core.policies import MemoryPolicy


def check_policy(policy) -> None:
    if policy is not None and not isinstance(policy, MemoryPolicy):
        hint = " (a name: build the policy, e.g. H2O(0.25) from core.policies)" if isinstance(policy, str) else ""
        raise ArgumentTypeError(f"policy: expected a MemoryPolicy or None, got {type(policy).__name__} "
                                f"{policy!r}{hint}")


def check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers count
        raise ArgumentTypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise UserError(f"{name}: must be at least {minimum}, got {value}")


def check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name}: expected True or False, got {type(value).__name__} {value!r}")


def vocab_size(model) -> int | None:
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return getattr(embeddings, "num_embeddings", None)


def check_ids(name: str, ids, vocab: int | None) -> None:
    """`ids`: a [batch, tokens] (or [tokens]) integer tensor with at least one token, each in [0, vocab)."""
    if not isinstance(ids, torch.Tensor):
        raise ArgumentTypeError(f"{name}: expected a tensor of token ids, got {type(ids).__name__}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ArgumentTypeError(f"{name}: expected integer token ids, got dtype {ids.dtype}")
    if ids.dim() not in (1, 2):
        raise UserError(f"{name}: expected shape [tokens] or [batch, tokens], got {list(ids.shape)}")
    if ids.numel() == 0:
        raise UserError(f"{name}: empty (shape {list(ids.shape)}); give at least one prompt token")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or (vocab is not None and high >= vocab):
        bad = low if low < 0 else high
        raise UserError(f"{name}: token id {bad} is outside the model's vocabulary [0, {vocab})")
