"""A LLaVA-NeXT-Video whose language model is the embedded SmolLM2-135M-Instruct (the model the shipped
NAMM was evolved on), read through low-rank adapters, with a small CLIP vision tower and projector.

The repository holds only what the project trained: `vision.safetensors` (vision tower and projector),
`lm_adapter.safetensors` (the language model's adapters) and `smol_llava.json`; `load_smol_llava(folder)`
builds the real `LlavaNextVideoForConditionalGeneration` from the config, copies SmolLM2's weights from
the embedded model, merges the adapters into them and loads the vision weights.

A frame is 40 x 40 pixels in 8-pixel patches: 25 video tokens (pooling stride 1). SmolLM2's vocabulary
has no video token, so its unused special token `<empty_output>` stands for `<video>` (the placeholders
are replaced by video features before the language model sees them).
"""
from __future__ import annotations

from pathlib import Path

import torch

from eval.video.jsonio import read_json, write_json_atomic

from .lora import TARGETS, add_lora, load_lora_state_dict, merge_lora
from .processor import HFTokenizer, TinyVideoProcessor

BASE = "smollm2"
VIDEO_TOKEN = "<empty_output>"
META = "smol_llava.json"
VISION_FILE = "vision.safetensors"
ADAPTER_FILE = "lm_adapter.safetensors"
IMAGE_SIZE, PATCH_SIZE, POOL_STRIDE = 40, 8, 1
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
VISION_PREFIXES = ("model.vision_tower.", "model.multi_modal_projector.", "model.vision_resampler.")


class SmolVideoProcessor(TinyVideoProcessor):
    """Frames as the tiny model's processor prepares them; the prompt in SmolLM2's chat template."""

    def chat_prompt(self, system: str, question: str, answer_prefix: str) -> str:
        messages = [{"role": "user", "content": f"{self.tokenizer.video_token}\n{question}"}]
        if system:
            messages.insert(0, {"role": "system", "content": system.strip()})
        return self.tokenizer.inner.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + answer_prefix


def smol_config(text_config, video_token_id: int):
    from transformers import CLIPVisionConfig, LlavaNextVideoConfig

    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=VISION["hidden_size"], **VISION)
    side = IMAGE_SIZE // PATCH_SIZE
    return LlavaNextVideoConfig(
        vision_config=vision, text_config=text_config.to_dict(),
        video_token_index=video_token_id, image_token_index=video_token_id,
        vision_feature_layer=-1, vision_feature_select_strategy="default",
        spatial_pool_mode="average", spatial_pool_stride=POOL_STRIDE,
        image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]], image_seq_length=side * side,
        video_seq_length=(side // POOL_STRIDE) ** 2, tie_word_embeddings=text_config.tie_word_embeddings,
    )


def processor_for(tokenizer, video_token_id: int) -> SmolVideoProcessor:
    return SmolVideoProcessor(HFTokenizer(tokenizer, video_token_id), IMAGE_SIZE, PATCH_SIZE, POOL_STRIDE)


def build(seed: int = 0, attn_implementation: str = "sdpa"):
    """A new model: SmolLM2's weights (no adapters), a randomly initialised vision tower and projector."""
    from transformers import LlavaNextVideoForConditionalGeneration

    from adapters.loading import load_model

    lm, tokenizer = load_model(BASE)
    video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    torch.manual_seed(seed)
    cfg = smol_config(lm.config, video_token_id)
    cfg._attn_implementation = attn_implementation
    model = LlavaNextVideoForConditionalGeneration(cfg)
    missing = model.model.language_model.load_state_dict(lm.model.state_dict())
    if missing.missing_keys or missing.unexpected_keys:
        raise RuntimeError(f"SmolLM2 weights do not fit the language model: {missing}")
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    return model.float().eval(), processor_for(tokenizer, video_token_id)


def vision_state_dict(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(VISION_PREFIXES)}


def save_smol_llava(folder: str | Path, model, adapter: dict[str, torch.Tensor] | None, meta: dict) -> None:
    """Write the vision weights, the adapters (keys relative to the decoder, `layers.N...`) and `meta`
    (the adapters' rank, alpha and target layers, how the model was made) into `folder`, each file atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {VISION_FILE: vision_state_dict(model)}
    if adapter is not None:
        files[ADAPTER_FILE] = adapter
    for name, state in files.items():
        tmp = folder / (name + ".tmp")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        tmp.replace(folder / name)
    write_json_atomic(folder / META, {"base": BASE, "video_token": VIDEO_TOKEN, "image_size": IMAGE_SIZE,
                                      "patch_size": PATCH_SIZE, "pool_stride": POOL_STRIDE, **meta})


def load_smol_llava(folder: str | Path, attn_implementation: str = "sdpa"):
    """(model, processor) from a folder written by `save_smol_llava`: eval mode, float32, adapters merged."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no {META} (not a SmolLM2 LLaVA folder)")
    meta = read_json(meta_path)
    for key in ("base", "lora_rank", "lora_alpha"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing field '{key}'")
    if meta["base"] != BASE:
        raise ValueError(f"{meta_path}: base '{meta['base']}' is not '{BASE}'")
    model, processor = build(attn_implementation=attn_implementation)
    if (folder / ADAPTER_FILE).is_file():
        decoder = model.model.language_model
        add_lora(decoder, meta["lora_rank"], meta["lora_alpha"], tuple(meta.get("lora_targets", TARGETS)))
        load_lora_state_dict(decoder, load_file(str(folder / ADAPTER_FILE)))
        merge_lora(decoder)
    vision = load_file(str(folder / VISION_FILE))
    result = model.load_state_dict(vision, strict=False)
    wrong = [k for k in result.missing_keys if k.startswith(VISION_PREFIXES)] + list(result.unexpected_keys)
    if wrong:
        raise ValueError(f"{folder / VISION_FILE}: keys do not match the model: {wrong[:5]}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), processor
