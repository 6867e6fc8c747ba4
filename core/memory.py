"""The memory contract: one layer's cached tokens and everything kept per token.

Keys and values are `[B, H, L, D]` (H = KV heads, keys after RoPE). `positions` is `[B, H, L]`:
each token's absolute position, so ages stay true after eviction. `state` holds the policy's
per-token tensors `[B, H, P, ...]` for the first P tokens (the tokens the policy has observed;
P < L only inside a forward pass that is still working through its own new tokens).
Eviction re-indexes K, V, positions and state with the same per-head indices.
"""
from __future__ import annotations

import torch


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select tokens along dim 2 of `x` [B, H, L, ...] with per-head `index` [B, H, K]."""
    expanded = index.view(*index.shape, *([1] * (x.dim() - 3))).expand(*index.shape, *x.shape[3:])
    return torch.gather(x, 2, expanded)


class LayerMemory:
    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None
        self.state: dict[str, torch.Tensor] = {}
        self.n_seen = 0  # tokens ever appended: the absolute position of the next token
        self.observed = 0  # P: tokens whose queries have been processed (the policy's view)
        self.since_update = 0  # tokens observed since the last policy update
        self.n_evicted = 0

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        b, h, q, _ = keys.shape
        pos = torch.arange(self.n_seen, self.n_seen + q, device=keys.device, dtype=torch.long)
        pos = pos.view(1, 1, q).expand(b, h, q)
        if self.keys is None:
            self.keys, self.values, self.positions = keys, values, pos.contiguous()
        else:
            self.keys = torch.cat([self.keys, keys], dim=2)
            self.values = torch.cat([self.values, values], dim=2)
            self.positions = torch.cat([self.positions, pos], dim=2)
        self.n_seen += q

    @property
    def processed(self) -> int:
        """Tokens observed so far, kept or evicted: the size a full cache would have."""
        return self.observed + self.n_evicted

    def advance(self, n_tokens: int) -> None:
        """Mark the next `n_tokens` appended tokens as observed; their state rows start at zero."""
        self.observed += n_tokens
        self.since_update += n_tokens
        self.extend_state()

    def extend_state(self) -> None:
        for name, t in self.state.items():
            missing = self.observed - t.shape[2]
            if missing > 0:
                pad = t.new_zeros(*t.shape[:2], missing, *t.shape[3:])
                self.state[name] = torch.cat([t, pad], dim=2)

    def evict(self, keep: torch.Tensor) -> None:
        """Keep, per head, the tokens `keep` [B, H, K] (ascending) of the first P tokens.

        Tokens after P (not yet observed) are kept as they are, after the survivors.
        """
        p = self.observed
        total = len(self)
        if keep.shape[2] == p:
            return
        tail = torch.arange(p, total, device=keep.device).view(1, 1, -1).expand(*keep.shape[:2], -1)
        index = torch.cat([keep, tail], dim=2)
        self.keys = gather_tokens(self.keys, index)
        self.values = gather_tokens(self.values, index)
        self.positions = gather_tokens(self.positions, index)
        self.state = {name: gather_tokens(t, keep) for name, t in self.state.items()}
        self.n_evicted += p - keep.shape[2]
        self.observed = keep.shape[2]

    def observed_keys(self) -> torch.Tensor:
        return self.keys[:, :, : self.observed]

    def observed_positions(self) -> torch.Tensor:
        return self.positions[:, :, : self.observed]
