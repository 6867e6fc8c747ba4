"""A transformers cache whose layers are `core.memory.LayerMemory` objects.

`get_seq_length()` reports the number of tokens processed (the length a full cache would have),
not the number kept: transformers derives new tokens' positions and `generate` slices its
inputs from it, and both must stay those of the uncompressed sequence after eviction.
"""
from __future__ import annotations

from transformers.cache_utils import DynamicCache, DynamicLayer

from core.memory import LayerMemory


class MemoryLayer(DynamicLayer):
    is_croppable = False

    def __init__(self, **kwargs) -> None:
        self.mem = LayerMemory()
        super().__init__(**kwargs)

    @property
    def keys(self):
        return self.mem.keys

    @keys.setter
    def keys(self, value):
        self.mem.keys = value

    @property
    def values(self):
        return self.mem.values

    @values.setter
    def values(self, value):
        self.mem.values = value

    def lazy_initialization(self, key_states, value_states) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.mem.append(key_states, value_states)
        return self.mem.keys, self.mem.values

    def keep_recent(self, n_tokens: int) -> None:
        """Drop all but the last `n_tokens` tokens (a sliding-window layer, which no policy manages)."""
        drop = len(self.mem) - n_tokens
        if drop > 0:
            mem = self.mem
            mem.keys, mem.values = mem.keys[:, :, drop:], mem.values[:, :, drop:]
            mem.positions = mem.positions[:, :, drop:]
            mem.n_evicted += drop

    def get_seq_length(self) -> int:
        return self.mem.n_seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.mem.n_seen + query_length, 0

    def reset(self) -> None:
        self.mem = LayerMemory()
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a cache under a memory policy cannot be cropped (assisted decoding is not supported)")

    def reorder_cache(self, beam_idx) -> None:
        raise NotImplementedError("beam search is not supported under a memory policy; use greedy or sampling")

    def batch_select_indices(self, indices) -> None:
        raise NotImplementedError("selecting batch rows of a cache under a memory policy is not supported")


class MemoryCache(DynamicCache):
    """`managed`: the layers the policy manages (all when None); `fraction()` is taken over them. `attach`
    sets it for a cache built without it."""

    def __init__(self, num_layers: int, managed=None) -> None:
        super().__init__()
        self.layers = [MemoryLayer() for _ in range(num_layers)]
        for i, layer in enumerate(self.layers):
            layer.mem.layer_idx = i
        self.layer_class_to_replicate = None
        self.managed = None if managed is None else sorted(managed)

    def memories(self) -> list[LayerMemory]:
        return [layer.mem for layer in self.layers]

    def kept_tokens(self) -> list[int]:
        return [len(m) for m in self.memories()]

    def managed_memories(self) -> list[LayerMemory]:
        """The memories of the layers the policy manages (a sliding-window layer keeps its own window)."""
        return self.memories() if self.managed is None else [self.layers[i].mem for i in self.managed]

    def fraction(self) -> float:
        """Mean over the managed layers of kept / processed tokens (1.0 for a full cache)."""
        mems = [m for m in self.managed_memories() if m.n_seen]
        return sum(len(m) / m.n_seen for m in mems) / len(mems) if mems else 1.0

    def fraction_at_update(self) -> float:
        """Mean over the managed layers of kept / processed tokens right after the last update, leaving out
        the tokens added since (1.0 where no update happened): the fraction a budget policy on the same
        schedule takes as its budget to hold as many tokens as this cache, within one."""
        fractions = []
        for m in self.managed_memories():
            processed = m.n_seen - m.since_update
            if m.n_seen:
                fractions.append((len(m) - m.since_update) / processed if processed else 1.0)
        return sum(fractions) / len(fractions) if fractions else 1.0

    def processed_tokens(self) -> int:
        """Tokens the cache has taken in, kept or evicted (the size a full cache would have)."""
        return max((m.n_seen for m in self.memories()), default=0)
