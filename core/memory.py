"""The memory contract: one layer's cached tokens and everything kept per token.

Keys and values are `[B, H, L, D]` (H = KV heads, keys after RoPE). `positions` is `[B, H, L]`:
each token's absolute position, so ages stay true after eviction. `state` is a `TokenState`: the
policy's per-token tensors for the first P tokens (the tokens the policy has observed; P < L only
inside a forward pass that is still working through its own new tokens). Each reads as
`[B, H, P, ...]`. Eviction re-indexes K, V, positions and state with the same per-head indices.

One state field has a meaning outside the policy: `state[HIDDEN]`, bool `[B, H, P]`, marks tokens that
stay in the (rectangular) cache but that attention must not see: a head that keeps fewer tokens than
another (head-adaptive budgets, `core.policies.adakv`) holds the difference as hidden tokens. The
attention function gives them zero attention; tokens after P and memories without the field are visible.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

HIDDEN = "hidden"  # state field: kept tokens attention must not see (see the module docstring)


def gather_tokens(x: torch.Tensor, index: torch.Tensor, axis: int = 2) -> torch.Tensor:
    """Select tokens along `axis` (>= 2) of `x` [B, H, ...] with per-head `index` [B, H, K]."""
    b, h, k = index.shape
    view = [b, h] + [k if d == axis else 1 for d in range(2, x.dim())]
    target = list(x.shape)
    target[axis] = k
    return torch.gather(x, axis, index.view(view).expand(target))


def _grown(capacity: int, needed: int) -> int:
    """Room for `needed` tokens and then some, so that one token at a time copies rarely (x1.125)."""
    return max(needed, capacity + max(64, capacity // 8))


@dataclass
class TokenField:
    """One per-token tensor. `data` holds room for `data.shape[token_axis]` tokens (its capacity);
    the first `length` are live. `time_axis`, when set, is a second axis of which only the first
    `time_length` entries are live (the spectrogram's buffered samples)."""

    data: torch.Tensor
    length: int
    token_axis: int = 2
    time_axis: int | None = None
    time_length: int = 0

    @property
    def capacity(self) -> int:
        return self.data.shape[self.token_axis]

    def stored(self) -> torch.Tensor:
        """The live part in the stored layout."""
        out = self.data.narrow(self.token_axis, 0, self.length)
        if self.time_axis is not None:
            out = out.narrow(self.time_axis, 0, self.time_length)
        return out

    def view(self) -> torch.Tensor:
        """The live part as `[B, H, P, ...]`."""
        return self.stored().movedim(self.token_axis, 2)

    def resize(self, length: int) -> None:
        """Make `length` tokens live; new tokens start at zero."""
        if length > self.capacity:
            shape = list(self.data.shape)
            shape[self.token_axis] = _grown(self.capacity, length)
            grown = self.data.new_zeros(shape)
            grown.narrow(self.token_axis, 0, self.length).copy_(self.data.narrow(self.token_axis, 0, self.length))
            self.data = grown
        elif length > self.length:
            self.data.narrow(self.token_axis, self.length, length - self.length).zero_()
        self.length = length

    def gather(self, keep: torch.Tensor) -> None:
        """Keep the tokens `keep` [B, H, K] of the live ones (no spare capacity afterwards)."""
        self.data = gather_tokens(self.data.narrow(self.token_axis, 0, self.length), keep, self.token_axis)
        self.length = keep.shape[2]


class TokenState:
    """The policy's per-token state of one layer: named `TokenField`s that all cover the same P
    tokens. `state[name]` reads a field as `[B, H, P, ...]`; `state[name] = t` stores a tensor of
    that layout. Fields grow with spare capacity, so adding one token at a time does not copy the
    whole state every token, and are re-indexed together on eviction."""

    def __init__(self) -> None:
        self.fields: dict[str, TokenField] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.fields[name].view()

    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        self.fields[name] = TokenField(tensor, tensor.shape[2])

    def __len__(self) -> int:
        return len(self.fields)

    def keys(self):
        return self.fields.keys()

    def items(self):
        return [(name, f.view()) for name, f in self.fields.items()]

    def add(self, name: str, data: torch.Tensor, length: int, token_axis: int = 2,
            time_axis: int | None = None, time_length: int = 0) -> TokenField:
        """Store a field in its own layout (token axis anywhere after B, H)."""
        self.fields[name] = TokenField(data, length, token_axis, time_axis, time_length)
        return self.fields[name]

    def field(self, name: str) -> TokenField:
        return self.fields[name]

    def resize(self, length: int) -> None:
        for f in self.fields.values():
            if f.length < length:
                f.resize(length)

    def gather(self, keep: torch.Tensor) -> None:
        for f in self.fields.values():
            f.gather(keep)


class LayerMemory:
    def __init__(self, layer_idx: int | None = None) -> None:
        self.layer_idx = layer_idx  # which layer of the model this memory serves, where the adapter knows it
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None
        self.state = TokenState()
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
        self.state.resize(self.observed)

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
        self.state.gather(keep)
        self.n_evicted += p - keep.shape[2]
        self.observed = keep.shape[2]

    def visible(self, n_keys: int | None = None) -> torch.Tensor | None:
        """[B, H, n_keys] bool over the first `n_keys` tokens (default: all): False where a token is hidden
        (`state[HIDDEN]`). None when every one of them is visible."""
        if HIDDEN not in self.state:
            return None
        hidden = self.state[HIDDEN]
        n_keys = len(self) if n_keys is None else n_keys
        p = min(hidden.shape[2], n_keys)
        if not bool(hidden[..., :p].any()):
            return None
        out = torch.ones(*hidden.shape[:2], n_keys, dtype=torch.bool, device=hidden.device)
        out[..., :p] = ~hidden[..., :p]
        return out

    def observed_keys(self) -> torch.Tensor:
        return self.keys[:, :, : self.observed]

    def observed_positions(self) -> torch.Tensor:
        return self.positions[:, :, : self.observed]
