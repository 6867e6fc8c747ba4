"""Checks a checkpoint's loader runs on what it read, before building anything from it.

A checkpoint whose numbers are not finite (NaN or inf in a tensor, `"gamma": NaN` in its config.json, which
Python's json accepts) or whose weights file holds a tensor the loader does not know is refused with a
UserError naming the file and the field or tensor, instead of loading into a policy that silently keeps
everything. Torch only (no transformers): loaders of any kind pass their own allowed tensor names.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from core.errors import UserError

NAMM_TENSORS = frozenset({"params", "norm_mean", "norm_var"})  # what NAMM.save_pretrained writes


def _non_finite_fields(value, where: str):
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite_fields(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _non_finite_fields(item, f"{where}[{i}]")


def check_config_numbers(data: Mapping, path) -> None:
    """Every number in the config object (nested objects and lists too) is finite."""
    for field, value in _non_finite_fields(data, ""):
        raise UserError(f"{path}: field '{field}' is {value}; a checkpoint's numbers must be finite")


def check_tensor_names(tensors: Mapping[str, torch.Tensor], path, allowed: Iterable[str]) -> None:
    """No tensor beyond `allowed` (a file that holds more is another kind of checkpoint, or damaged)."""
    unknown = sorted(set(tensors) - set(allowed))
    if unknown:
        shown = ", ".join(repr(name) for name in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise UserError(f"{path}: unknown tensor(s) {shown}; expected only {sorted(allowed)}")


def check_tensors_finite(tensors: Mapping[str, torch.Tensor], path) -> None:
    for name, tensor in tensors.items():
        if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise UserError(f"{path}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf) of {tensor.numel()}")


def check_tensors(tensors: Mapping[str, torch.Tensor], path, allowed: Iterable[str] | None = None) -> None:
    """Known names (when `allowed` is given) and finite values."""
    if allowed is not None:
        check_tensor_names(tensors, path, allowed)
    check_tensors_finite(tensors, path)


def check_non_negative(tensors: Mapping[str, torch.Tensor], path, names: Iterable[str]) -> None:
    """Tensors that are variances or scales: no value below zero."""
    for name in names:
        if name in tensors and bool((tensors[name] < 0).any()):
            raise UserError(f"{path}: tensor {name!r} has negative values; it is a variance")


def check_loading_info(info: Mapping, path, what: str) -> None:
    """A Hugging Face `from_pretrained(..., output_loading_info=True)` report: the weights file at `path` held
    tensors the model lacks, or lacked some the model has (they would stay at random values)."""
    for kind, label in (("unexpected_keys", "unknown"), ("missing_keys", "missing")):
        names = sorted(info.get(kind) or ())
        if names:
            shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
            raise UserError(f"{path}: {label} tensor(s) {shown} for {what}")
