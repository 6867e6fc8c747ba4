"""A prompt's first update interval, computed once and shared by every NAMM that reads it.

Before a NAMM's first update nothing is evicted and what it folds into each token's state depends
only on the attention, not on its parameters. So for NAMMs of the same observer configuration the
cache after the first `n_up` prompt tokens is the same, up to the eviction each NAMM then makes.
`SharedPrefix` runs those tokens once under an observer (`NAMM.observer(config)`, which folds attention
into its state and evicts nothing); `cache_for(namm)` hands each member a deep copy on which that member's own
first update has been applied, exactly where it would have run had the member started from token 0.
Prefill then continues at token `n_up`; when prompts are fed in chunks of `n_up` tokens (the reference
cadence feeds 512 with n_up 512) the chunk boundaries are those of a run from scratch, and the
member's outputs are bit-identical to it. The prefix is computed on the members' attention path (`exact`, as
in `attach`): a member continuing from it on the same path is bit-identical to one run from scratch on that path.
"""
from __future__ import annotations

import copy
import time

import torch

from adapters.hf.attach import attach
from adapters.hf.generation import _forward


def observer_key(namm) -> tuple:
    """What the shared state depends on: every NAMM with this key observes identically."""
    c = namm.config
    key = (namm.n_up, c.n_fft, c.hop, c.gamma)
    if c.features != "paper":
        key += (c.features, c.spectrogram, c.snap_window)
    return key


def never_evicts(namm) -> bool:
    """An observer (`NAMM.observer`), or the paper's all-zero NAMM (it scores every token 0 and keeps all)."""
    c = namm.config
    zero_paper = c.features == "paper" and c.selection == "threshold" and c.threshold <= 0
    return namm.observe_only or (zero_paper and not bool(namm.params.abs().sum() > 0))


class SharedPrefix:
    """The cache after the first `namm.n_up` tokens of `input_ids`, before any eviction."""

    def __init__(self, model, input_ids: torch.Tensor, observer, observe_rows: int = 128, exact: bool = False) -> None:
        n_up = observer.n_up
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if input_ids.shape[1] <= n_up:
            raise ValueError(f"a shared prefix needs a prompt longer than n_up ({n_up} tokens), got {input_ids.shape[1]}")
        if not never_evicts(observer):
            raise ValueError("the shared prefix must be observed by NAMM.observer(config) or the paper's all-zero "
                             "NAMM (it must not evict)")
        self.key = observer_key(observer)
        self.length = n_up
        self.observe_rows = observe_rows
        self.exact = exact  # the attention path the members must run on
        device = next(model.parameters()).device
        started = time.perf_counter()
        with torch.no_grad(), attach(model, observer, observe_rows=observe_rows, exact=exact) as session:
            self.cache = session.new_cache()
            session.prompt.feeding(last=False)  # the prompt goes on after the prefix
            _forward(model, input_ids[:, :n_up].to(device), self.cache, 0)
        # The observer's update at token n_up kept everything; each member redoes it with its own scores.
        self.managed = sorted(session.managed)
        self.seconds = time.perf_counter() - started

    def cache_for(self, namm):
        """A deep copy of the prefix cache after `namm`'s update at token n_up."""
        if observer_key(namm) != self.key:
            raise ValueError(f"this prefix was observed with (n_up, n_fft, hop, gamma[, features]) = {self.key}; "
                             f"the NAMM has {observer_key(namm)}")
        cache = copy.deepcopy(self.cache)
        with torch.no_grad():
            for layer in self.managed:
                mem = cache.layers[layer].mem
                keep = namm.select(mem)
                if keep is not None:
                    mem.evict(keep)
        return cache
