"""Gather the NAMM's frozen feature-normalisation statistics on calibration text.

As in the reference, the statistics are collected with the all-zero NAMM (it keeps every token,
so the features are those of an unmodified cache), pooled over heads, tokens and layers at every
update, then frozen into the policy.
"""
from __future__ import annotations

import torch

from adapters.hf.generation import greedy_generate
from core.namm import NAMM


@torch.no_grad()
def calibrate_normalisation(namm: NAMM, model, token_ids: list[torch.Tensor], exact: bool = False) -> int:
    """Set `namm`'s normalisation statistics from prompts `token_ids`; returns the number of
    feature vectors seen. Prompts shorter than `namm.n_up` tokens contribute nothing. `exact`: the
    attention path, as in `adapters.hf.attach`."""
    probe = NAMM.zeros(namm.config)
    probe.start_calibration()
    for ids in token_ids:
        greedy_generate(model, ids, probe, max_new_tokens=1, exact=exact)
    count = probe.finish_calibration()
    namm.normaliser.mean = probe.normaliser.mean.clone()
    namm.normaliser.var = probe.normaliser.var.clone()
    return count
