"""Gemma 3 text models (`Gemma3ForCausalLM`, e.g. Gemma 3 270M): RoPE, GQA, and local layers.

Gemma 3 interleaves sliding-window layers (`config.layer_types`: five `sliding_attention` layers
with a 512-token window, then one `full_attention` layer) with full-attention layers. The rule
here: a memory policy manages only the full-attention layers. Sliding layers are left to their
window: they attend to the last `sliding_window` tokens and keep only the `sliding_window - 1`
tokens a later query can see, as the unmodified model's cache does, so a policy that keeps
everything is bit-identical to the unmodified model. Cache fractions are taken over the managed
layers.
"""
from __future__ import annotations

from adapters import llama

FAMILIES = ("gemma3_text",)

decoder = llama.decoder
num_layers = llama.num_layers
text_config = llama.text_config
cache_owner = llama.cache_owner


def attention_modules(model):
    if getattr(model.config, "use_bidirectional_attention", False):
        raise ValueError(f"{type(model).__name__}: bidirectional Gemma 3 models (embedding models) have no "
                         f"causal KV cache for a memory policy to manage")
    return llama.attention_modules(model)


def sliding_layers(model) -> set[int]:
    """Indices of the layers with a sliding window: the policy leaves them to it."""
    return {i for i, kind in enumerate(model.config.layer_types) if kind == "sliding_attention"}
