"""Llama 3, SmolLM2 and other decoder LMs with Llama's layout (RoPE, GQA)."""
from __future__ import annotations

FAMILIES = ("llama",)


def decoder(model):
    return model.model if hasattr(model, "model") and hasattr(model.model, "layers") else model


def attention_modules(model):
    return [layer.self_attn for layer in decoder(model).layers]


def num_layers(model) -> int:
    return len(decoder(model).layers)


def text_config(model):
    return model.config


def cache_owner(model):
    """The module whose forward receives the cache: hooking it covers `model(...)` and `generate`."""
    return model
