"""Shared Hugging Face machinery: the memory-aware attention function, the cache it manages,
`attach(model, policy)` and a greedy decoding path with chunked prefill."""
from adapters.hf.attach import attach
from adapters.hf.cache import MemoryCache
from adapters.hf.generation import greedy_generate

__all__ = ["attach", "MemoryCache", "greedy_generate"]
