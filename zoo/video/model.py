"""The tiny LLaVA-NeXT-Video: config, and `load_video_model(path)` -> (model, processor)."""
from __future__ import annotations

from pathlib import Path

import torch

from .processor import TinyVideoProcessor
from .tokenizer import WordTokenizer

SIZES = {
    "vision": dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4),
    "text": dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2),
}


def tiny_config(tokenizer: WordTokenizer, image_size: int = 32, patch_size: int = 16, max_positions: int = 2048):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig

    vision = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, projection_dim=SIZES["vision"]["hidden_size"], **SIZES["vision"])
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **SIZES["text"],
    )
    return LlavaNextVideoConfig(
        vision_config=vision,
        text_config=text,
        video_token_index=tokenizer.video_token_id,
        image_token_index=tokenizer.image_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_grid_pinpoints=[[image_size, image_size]],
        image_seq_length=(image_size // patch_size) ** 2,
        video_seq_length=(image_size // patch_size // 2) ** 2,
        tie_word_embeddings=False,
    )


def new_model(tokenizer: WordTokenizer, image_size: int = 32, patch_size: int = 16, seed: int = 0):
    from transformers import LlavaNextVideoForConditionalGeneration

    torch.manual_seed(seed)
    cfg = tiny_config(tokenizer, image_size, patch_size)
    model = LlavaNextVideoForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model, TinyVideoProcessor(tokenizer, image_size, patch_size, 2)


def load_video_model(path: str | Path, attn_implementation: str = "sdpa"):
    """The shipped tiny model (eval mode, float32) and its processor from a save_pretrained folder."""
    from transformers import LlavaNextVideoForConditionalGeneration

    from core.checkpoint_checks import check_config_numbers, check_loading_info, check_tensors_finite
    from core.errors import read_json_object

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json (not a saved model folder)")
    check_config_numbers(read_json_object(path / "config.json"), path / "config.json")
    model, info = LlavaNextVideoForConditionalGeneration.from_pretrained(
        path, dtype=torch.float32, attn_implementation=attn_implementation, output_loading_info=True
    )
    weights = path / "model.safetensors"
    check_loading_info(info, weights, "the tiny video model")
    check_tensors_finite(model.state_dict(), weights)
    return model.eval(), TinyVideoProcessor.from_pretrained(path)


def save_video_model(model, processor: TinyVideoProcessor, path: str | Path) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)


@torch.no_grad()
def generate_reply(model, processor: TinyVideoProcessor, frames, prompt: str, max_new_tokens: int = 6) -> str:
    """Greedy reply text (new tokens only) to `prompt` (holding one <video>) about `frames` [T, H, W, 3]."""
    inputs = processor(prompt, frames)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1] :])
