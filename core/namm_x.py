"""NAMM-X: a small readout over features in which every baseline's signal is one column.

Per token and layer (and per KV head, or averaged over the KV heads when heads share one kept set):

| feature | what it is | the rule that ranks by it |
|---|---|---|
| tova | the newest query's attention | TOVA |
| h2o | attention accumulated over every query since the token arrived | H2O |
| snapkv | the last `snap_window` queries' attention, pooled over `snap_kernel` tokens | SnapKV |
| l2 | -(key L2 norm) | L2 (KnormPress) |
| recency | the token's absolute position (newer is higher; the rank of -age) | StreamingLLM |
| max_received | the most attention one query paid the token since it arrived (option `max_received`) | KVzip's maximum, over the prefill's own queries |
| sink | 1 for the first `n_sink` tokens of the sequence | StreamingLLM's sinks |
| h2o_window | 1 for the newest int(h2o_recent_ratio x kept) tokens | H2O's recent window |
| snapkv_window | 1 for the newest `snap_window` tokens | SnapKV's protected window |
| spec_0..16 | the paper's spectrogram EMA, with the rows still buffered at the update folded in | NAMM |

The first five and the spectrogram bins are normalised within the layer at each update by their rank
among the layer's tokens (0 for the lowest, 1 for the highest), so one readout reads the same scale at
any length, model and modality; the flags stay 0/1. Ranking keeps every column's order exactly, so a
readout of 1 on a column (plus 2 on its rule's flags, which then outrank any mix of ranks) keeps exactly
the tokens its baseline keeps at the same budget (`baseline_readout`; tests/test_namm_x.py checks it with
torch.equal). Under ranks, age and log-age order tokens alike, so `recency` stands for both.

The readout is `score = f . w + b`, plus, with `hidden` > 0, `v . tanh(f W + c)` (zero at the start, so a
baseline's linear readout is exactly representable); parameters as one flat vector
`[w (F), b (1), W (F x hidden), c (hidden), v (hidden)]`.
"""
from __future__ import annotations

import torch

from core import signals
from core.memory import LayerMemory
from core.spectrogram import StreamingSpectrogram

SIGNALS = ("tova", "h2o", "snapkv", "l2", "recency")
OPTIONAL_SIGNALS = ("max_received",)  # columns a config adds by name; checkpoints without them are unchanged
FLAGS = ("sink", "h2o_window", "snapkv_window")
FLAG_WEIGHT = 2.0  # a flag's readout weight in a baseline's rule: above any sum of one rank (<= 1)


def feature_names(n_freq: int, spectrogram: bool = True, max_received: bool = False) -> tuple[str, ...]:
    bins = tuple(f"spec_{i}" for i in range(n_freq)) if spectrogram else ()
    return signal_names(max_received) + FLAGS + bins


def signal_names(max_received: bool = False) -> tuple[str, ...]:
    """The ranked columns, in readout order."""
    return SIGNALS + (("max_received",) if max_received else ())


def readout_size(n_features: int, hidden: int) -> int:
    return n_features + 1 + hidden * (n_features + 2)


def unflatten_readout(flat: torch.Tensor, n_features: int, hidden: int) -> dict[str, torch.Tensor]:
    expected = readout_size(n_features, hidden)
    if flat.numel() != expected:
        raise ValueError(f"a NAMM-X readout over {n_features} features with {hidden} hidden units has "
                         f"{expected} parameters, got a vector of {flat.numel()}")
    f, h = n_features, hidden
    sizes = {"w": (f, (f,)), "b": (1, (1,)), "w_hidden": (f * h, (f, h)), "b_hidden": (h, (h,)), "v": (h, (h,))}
    out, start = {}, 0
    for name, (n, shape) in sizes.items():
        out[name] = flat[start : start + n].view(shape)
        start += n
    return out


def readout_scores(features: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """[..., P] scores of features [..., P, F]."""
    score = features @ params["w"] + params["b"]
    if params["v"].numel():
        score = score + torch.tanh(features @ params["w_hidden"] + params["b_hidden"]) @ params["v"]
    return score


def rank01(x: torch.Tensor) -> torch.Tensor:
    """Each value's rank along the last axis (how many values are smaller), scaled by 1 / (n - 1): equal
    values share a rank, so the order, ties included, is exactly the values' order."""
    n = x.shape[-1]
    ordered = torch.sort(x.contiguous(), dim=-1).values
    ranks = torch.searchsorted(ordered, x.contiguous())
    return ranks.to(torch.float32) / max(n - 1, 1)


class NAMMXFeatures:
    """Observes attention into the baselines' signals (and the spectrogram) and computes the feature
    tensor [B, H', P, F] of one layer at an update (H' = 1 when heads share one kept set)."""

    def __init__(self, config, spectrogram: StreamingSpectrogram | None) -> None:
        self.config = config
        self.spectrogram = spectrogram if config.spectrogram else None
        self.names = config.feature_names
        self.signals = signal_names(config.max_received)

    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        signals.observe_accumulated(mem, probs)
        signals.observe_last_row(mem, probs)
        signals.observe_window(mem, probs, rows_left, self.config.snap_window)
        if self.config.max_received:
            signals.observe_max_received(mem, probs)
        if self.spectrogram is not None:
            b, h = probs.shape[:2]
            self.spectrogram.init_state(mem.state, b, h, mem.observed, probs.device)
            self.spectrogram.observe(mem.state, probs)

    def ready(self, mem: LayerMemory) -> bool:
        return signals.ACCUMULATED in mem.state

    def raw(self, mem: LayerMemory, n_keep: int) -> dict[str, torch.Tensor]:
        """Every column before normalisation, [B, H, P] each (the spectrogram [B, H, P, n_freq])."""
        c = self.config
        cols = {
            "tova": mem.state[signals.LAST_ROW],
            "h2o": mem.state[signals.ACCUMULATED],
            "snapkv": signals.pooled_window(mem, c.snap_window, c.snap_kernel),
            "l2": signals.negative_key_norm(mem),
            "recency": signals.positions(mem),
            "sink": signals.sink_flag(mem, c.n_sink),
            "h2o_window": signals.last_flag(mem, int(n_keep * c.h2o_recent_ratio)),
            "snapkv_window": signals.last_flag(mem, c.snap_window),
        }
        if self.config.max_received:
            cols["max_received"] = mem.state[signals.MAX_RECEIVED]
        if self.spectrogram is not None:
            cols["spec"] = self.spectrogram.flushed(mem.state)
        return cols

    def __call__(self, mem: LayerMemory, n_keep: int, shared: bool) -> torch.Tensor:
        cols = self.raw(mem, n_keep)
        if shared:  # the heads' signals averaged first, as head-averaged TOVA averages attention
            cols = {k: v.mean(dim=1, keepdim=True) for k, v in cols.items()}
        parts = [rank01(cols[k].float()) for k in self.signals] + [cols[k].float() for k in FLAGS]
        stacked = torch.stack(parts, dim=-1)
        if self.spectrogram is None:
            return stacked
        spec = rank01(cols["spec"].float().transpose(-1, -2)).transpose(-1, -2)
        return torch.cat([stacked, spec], dim=-1)

    def after_update(self, mem: LayerMemory) -> None:
        signals.reset_window(mem)


RULES = {"tova": {"tova": 1.0}, "h2o": {"h2o": 1.0, "h2o_window": FLAG_WEIGHT},
         "snapkv": {"snapkv": 1.0, "snapkv_window": FLAG_WEIGHT}, "l2": {"l2": 1.0},
         "recency": {"recency": 1.0, "sink": FLAG_WEIGHT}, "max_received": {"max_received": 1.0}}


def baseline_readout(names: tuple[str, ...], hidden: int, baseline: str) -> torch.Tensor:
    """The flat readout whose top-k keeps what `baseline` keeps (in that baseline's head mode); `max_received`
    is the one-hot readout of that column (a rule no baseline of ours implements)."""
    if baseline not in RULES:
        raise ValueError(f"no NAMM-X readout for {baseline!r}; choose from {', '.join(RULES)}")
    missing = [name for name in RULES[baseline] if name not in names]
    if missing:
        raise ValueError(f"the {baseline} readout needs the feature(s) {missing}, which this feature set lacks "
                         f"(set the NAMM config's {missing[0]}: true)")
    flat = torch.zeros(readout_size(len(names), hidden))
    params = unflatten_readout(flat, len(names), hidden)
    for name, weight in RULES[baseline].items():
        params["w"][names.index(name)] = weight
    return flat


BASELINE_READOUTS = ("tova", "h2o", "snapkv", "l2", "recency")
BASELINE_HEAD_MODES = {"tova": "shared", "h2o": "per_head", "snapkv": "per_head", "l2": "per_head",
                       "recency": "per_head"}


def start_readouts(names: tuple[str, ...]) -> tuple[str, ...]:
    """The rule readouts `init_readout: best` measures: every baseline's, and each optional column's one-hot
    readout where the feature set has that column."""
    return BASELINE_READOUTS + tuple(n for n in OPTIONAL_SIGNALS if n in names)
