"""The per-token signals the baselines rank by, written once.

H2O, TOVA, SnapKV, L2 and StreamingLLM each read one of these; the NAMM-X feature set reads all of
them through the same functions, so a NAMM-X readout set to a baseline's rule computes that rule's
numbers bit for bit. Observers take `probs` [B, H, rows, V]: a block of queries' attention over the
first V of the P observed tokens (`core.policies.base.MemoryPolicy.observe`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.memory import LayerMemory

ACCUMULATED = "h2o_accumulated"  # attention summed over every query since the token arrived (H2O)
LAST_ROW = "tova_last_row"  # the newest query's attention (TOVA)
WINDOW = "snapkv_window_attention"  # attention summed over the last `window` queries before an update (SnapKV)
MAX_RECEIVED = "max_received_attention"  # the most attention one query paid the token since it arrived


def _zeros_for(mem: LayerMemory, probs: torch.Tensor) -> torch.Tensor:
    return probs.new_zeros(probs.shape[0], probs.shape[1], mem.observed)


def observe_accumulated(mem: LayerMemory, probs: torch.Tensor) -> None:
    if ACCUMULATED not in mem.state:
        mem.state[ACCUMULATED] = _zeros_for(mem, probs)
    mem.state[ACCUMULATED][..., : probs.shape[-1]] += probs.sum(dim=2)


def observe_last_row(mem: LayerMemory, probs: torch.Tensor) -> None:
    last = _zeros_for(mem, probs)
    last[..., : probs.shape[-1]] = probs[:, :, -1, :]
    mem.state[LAST_ROW] = last


def observe_max_received(mem: LayerMemory, probs: torch.Tensor) -> None:
    """The largest attention any observed query paid each token: KVzip scores a token by the most attention
    its reconstruction's queries pay it; this is the same maximum over the queries the model already ran."""
    if MAX_RECEIVED not in mem.state:
        mem.state[MAX_RECEIVED] = _zeros_for(mem, probs)
    seen = mem.state[MAX_RECEIVED][..., : probs.shape[-1]]
    torch.maximum(seen, probs.amax(dim=2), out=seen)


def observe_window(mem: LayerMemory, probs: torch.Tensor, rows_left: int, window: int) -> None:
    """Add the rows of this block that fall in the last `window` queries before the next update."""
    if WINDOW not in mem.state:
        mem.state[WINDOW] = _zeros_for(mem, probs)
    rows = probs.shape[2]
    first_in_window = max(0, rows + rows_left - window)
    if first_in_window < rows:
        mem.state[WINDOW][..., : probs.shape[-1]] += probs[:, :, first_in_window:].sum(dim=2)


def reset_window(mem: LayerMemory) -> None:
    """After an update: the next update looks at its own window."""
    if WINDOW in mem.state:
        mem.state[WINDOW].zero_()


def pooled_window(mem: LayerMemory, window: int, kernel: int) -> torch.Tensor:
    """SnapKV's score before its window is protected: the window's attention, average-pooled over
    `kernel` neighbouring tokens for the tokens before the window (zero padding counted, as its authors
    and kvpress pool); the window's own tokens keep their raw sums."""
    observed = mem.state[WINDOW]
    b, h, p = observed.shape
    before = p - window
    pooled = observed.clone()
    if before > 0:
        pooled[..., :before] = F.avg_pool1d(observed[..., :before].reshape(b * h, 1, before), kernel,
                                            stride=1, padding=kernel // 2).view(b, h, before)
    return pooled


def negative_key_norm(mem: LayerMemory) -> torch.Tensor:
    """-||k|| per cached key (L2 / KnormPress keeps the smallest norms)."""
    return -mem.observed_keys().float().norm(dim=-1)


def positions(mem: LayerMemory) -> torch.Tensor:
    return mem.observed_positions().float()


def sink_flag(mem: LayerMemory, n_sink: int) -> torch.Tensor:
    """1.0 for the first `n_sink` tokens of the sequence (attention sinks), else 0."""
    return (mem.observed_positions() < n_sink).float()


def last_flag(mem: LayerMemory, n: int) -> torch.Tensor:
    """1.0 for the newest `n` observed tokens of each head (the window a rule protects), else 0."""
    flag = torch.zeros(mem.observed_positions().shape, device=mem.keys.device)
    if n > 0:
        flag[..., -n:] = 1.0
    return flag
