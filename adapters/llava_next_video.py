"""LLaVA-NeXT-Video (`LlavaNextVideoForConditionalGeneration`): memory policies manage the
language-model layers; video tokens are cache tokens like any other. The vision tower, the
projector and the resampler are untouched."""
from __future__ import annotations

FAMILIES = ("llava_next_video",)


def language_model(model):
    inner = model.model if hasattr(model, "model") else model
    return inner.language_model


def attention_modules(model):
    return [layer.self_attn for layer in language_model(model).layers]


def num_layers(model) -> int:
    return len(language_model(model).layers)


def text_config(model):
    return model.config.get_text_config()


def cache_owner(model):
    return model
