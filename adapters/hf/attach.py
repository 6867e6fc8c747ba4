"""`with attach(model, policy): model.generate(...)`: run a memory policy inside a HF model."""
from __future__ import annotations

from contextlib import contextmanager

from adapters.hf import attention
from adapters.hf.arguments import check_bool, check_int, check_policy
from adapters.hf.cache import MemoryCache
from adapters.hf.prompt_state import PromptState
from core.memory import LayerMemory
from core.policies import FullCache, MemoryPolicy


class MemorySession:
    """What the attention function needs while a policy is attached: the policy and the cache."""

    def __init__(self, policy: MemoryPolicy, managed: dict[int, object], num_layers: int, observe_rows: int,
                 exact: bool = False):
        self.policy = policy
        self.exact = bool(exact)  # the output from SDPA and every row observed (adapters.hf.attention)
        self.managed = managed
        self.num_layers = num_layers
        self.observe_rows = int(observe_rows)
        self.cache: MemoryCache | None = None
        self.prompt = PromptState()  # where the forwards stand in the prompt (set by the driver feeding it)
        self.replay = None  # during a KVzip reconstruction forward: the chunk scored (adapters.hf.kvzip)
        self.rotaries: dict = {}  # layer -> its RoPE (adapters.hf.rope), for a policy that observes queries
        self.n_updates = 0
        self.observe_seconds = 0.0  # attention probabilities + policy.observe
        self.update_seconds = 0.0  # policy.select + eviction

    def new_cache(self) -> MemoryCache:
        return MemoryCache(self.num_layers, self.managed)

    def memory(self, layer_idx: int) -> LayerMemory | None:
        if self.cache is None or layer_idx not in self.managed:
            return None
        return self.cache.layers[layer_idx].mem



def _adapter_for(model):
    from adapters import registry

    return registry.adapter_for(model)


def _use_memory_cache(session: MemorySession):
    def hook(module, args, kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if kwargs.get("use_cache") is False:
            session.cache = None
            return args, kwargs
        if not isinstance(cache, MemoryCache):
            if cache is not None and cache.get_seq_length() > 0:
                raise ValueError("attach(): the model was given a cache that already holds tokens; start the "
                                 "sequence under attach() so that the policy sees all of it")
            cache = session.new_cache()
            kwargs.pop("past_key_values", None)
            kwargs["cache"] = cache
        if cache.managed is None:
            cache.managed = sorted(session.managed)
        session.cache = cache
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2 and not bool(mask.all()):
            raise ValueError("padded batches are not supported under a memory policy (caches are rectangular per "
                             "layer); run sequences of equal length or one at a time")
        return args, kwargs

    return hook


@contextmanager
def attach(model, policy: MemoryPolicy | None = None, observe_rows: int = 128, exact: bool = False):
    """Apply `policy` to every managed attention layer of `model` for the duration of the block.

    Inside, `model(...)` and `model.generate(...)` use a `MemoryCache`: the policy observes
    attention, evicts every `policy.n_up` tokens during prefill and decoding, and new tokens keep
    their original positions. Layers with a sliding window (the adapter's `sliding_layers`) are left
    to their window: the policy manages the others.

    By default, for a policy that observes attention, each layer computes one Q.K^T and softmax per
    block of queries and takes its output from those probabilities (a policy that reads only the last
    rows before an update, `observed_rows`, gets SDPA's output and probabilities for those rows only):
    equal to the unmodified model up to float rounding. `exact=True` computes the output with SDPA as the
    unmodified model does and the probabilities again for every row: a policy that evicts nothing is then
    bit-identical to the unmodified model.

    Blocks nest: inside an inner block the inner policy runs; when it exits, the outer block's policy and
    attention settings are back exactly as they were.
    """
    check_policy(policy)
    check_int("observe_rows", observe_rows, 1)
    check_bool("exact", exact)
    policy = policy if policy is not None else FullCache()
    adapter = _adapter_for(model)
    modules = adapter.attention_modules(model)
    text_config = adapter.text_config(model)
    policy.check_capacity(getattr(text_config, "max_position_embeddings", None))
    attention.register()
    sliding = adapter.sliding_layers(model) if hasattr(adapter, "sliding_layers") else set()
    managed = {m.layer_idx: m for m in modules if m.layer_idx not in sliding}
    session = MemorySession(policy, managed, adapter.num_layers(model), observe_rows, exact)
    if getattr(policy, "observes_queries", False):
        from adapters.hf.rope import layer_rotaries

        session.rotaries = layer_rotaries(model, managed)
    configs = {id(m.config): m.config for m in modules}
    previous = {key: cfg._attn_implementation for key, cfg in configs.items()}
    outer = {id(m): getattr(m, attention.SESSION_ATTR) for m in modules if hasattr(m, attention.SESSION_ATTR)}
    handle = adapter.cache_owner(model).register_forward_pre_hook(_use_memory_cache(session), with_kwargs=True)
    try:
        for cfg in configs.values():
            cfg._attn_implementation = attention.NAME
        for m in modules:
            setattr(m, attention.SESSION_ATTR, session)
        yield session
    finally:
        handle.remove()
        for m in modules:
            if id(m) in outer:  # an enclosing attach block: its session again
                setattr(m, attention.SESSION_ATTR, outer[id(m)])
            elif hasattr(m, attention.SESSION_ATTR):
                delattr(m, attention.SESSION_ATTR)
        for key, cfg in configs.items():
            cfg._attn_implementation = previous[key]
