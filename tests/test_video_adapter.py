"""LLaVA-NeXT-Video under a memory policy: only the language-model layers are managed and the
video tokens are cache tokens like any other."""
import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

from adapters.hf import attach
from core.namm import NAMM, NAMMConfig
from core.policies import H2O

VIDEO_TOKEN = 61


@pytest.fixture(scope="module")
def tiny_llava():
    torch.manual_seed(0)
    vision = CLIPVisionConfig(image_size=32, patch_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, projection_dim=32)
    text = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=2048)
    config = LlavaNextVideoConfig(vision_config=vision, text_config=text, image_token_index=60,
                                  video_token_index=VIDEO_TOKEN, spatial_pool_stride=2,
                                  vision_feature_select_strategy="default", vision_feature_layer=-1)
    return LlavaNextVideoForConditionalGeneration(config).eval()


def video_inputs(frames=8):
    tokens_per_frame = ((32 // 4) // 2) ** 2  # 8x8 patches pooled with stride 2
    ids = torch.cat([torch.randint(0, 50, (1, 5)), torch.full((1, frames * tokens_per_frame), VIDEO_TOKEN),
                     torch.randint(0, 50, (1, 10))], dim=1)
    return ids, torch.randn(1, frames, 3, 32, 32)


@pytest.mark.parametrize("exact", [True, False])
def test_zero_namm_changes_nothing(tiny_llava, exact):
    ids, pixels = video_inputs()
    kwargs = dict(input_ids=ids, pixel_values_videos=pixels, max_new_tokens=10, do_sample=False,
                  output_logits=True, return_dict_in_generate=True)
    ref = tiny_llava.generate(**kwargs)
    with attach(tiny_llava, NAMM.zeros(NAMMConfig(n_up=32)), exact=exact) as session:
        out = tiny_llava.generate(**kwargs)
    assert session.n_updates > 0
    assert torch.equal(out.sequences, ref.sequences)
    assert max((a - b).abs().max().item() for a, b in zip(out.logits, ref.logits)) < 1e-5


def test_policy_evicts_video_tokens_from_the_language_layers(tiny_llava):
    ids, pixels = video_inputs()
    with attach(tiny_llava, H2O(0.5, n_up=32)) as session:
        tiny_llava.generate(input_ids=ids, pixel_values_videos=pixels, max_new_tokens=4, do_sample=False)
        kept = session.cache.kept_tokens()
    assert len(kept) == 2  # the language model's layers; the vision tower has no cache
    assert all(k < ids.shape[1] * 0.7 for k in kept)
