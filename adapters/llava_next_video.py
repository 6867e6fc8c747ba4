"""LLaVA-NeXT-Video (`LlavaNextVideoForConditionalGeneration`): memory policies manage the
language-model layers; video tokens are cache tokens like any other. The vision tower, the
projector and the resampler are untouched."""
from __future__ import annotations

import torch

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


def prompt_embeddings(model, input_ids, pixel_values_videos):
    """The language model's input for a prompt: the token embeddings with the video features in the video
    tokens' places, as the model's own forward merges them (for a driver that feeds embeddings itself)."""
    inner = model.model
    embeds = inner.get_input_embeddings()(input_ids)
    out = inner.get_video_features(pixel_values_videos.to(embeds.dtype), return_dict=True)
    features = torch.cat([f.flatten(0, 1) for f in out.pooler_output], dim=0).to(embeds.device, embeds.dtype)
    _, mask = inner.get_placeholder_mask(input_ids, inputs_embeds=embeds, video_features=features)
    return embeds.masked_scatter(mask, features)
