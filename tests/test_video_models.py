"""eval.video drives a Hugging Face LLaVA-NeXT-Video folder as well as the tiny model, and runs
LongVideoBench from its official files."""
import json
import shutil

import numpy as np
import pytest
import torch

from adapters.hf import attach
from core.namm import NAMM, NAMMConfig
from eval.video import longvideobench as lvb
from eval.video import mlvu
from eval.video.models import load_video_chat
from zoo.video.mp4 import write_mp4

WORDS = ["<unk>", "<s>", "</s>", "<video>", "<image>", "USER", ":", "ASSISTANT", "Question", "Best", "option", "(",
         ")", "A", "B", "C", "D", "red", "blue", "green", "Options", "Only", "give", "the", "best", "."]


def _hf_folder(path):
    """A tiny random LlavaNextVideoForConditionalGeneration saved with a word-level fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig,
                              LlavaNextVideoForConditionalGeneration, PreTrainedTokenizerFast)

    vocab = {w: i for i, w in enumerate(WORDS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  additional_special_tokens=["<video>", "<image>"])
    torch.manual_seed(0)
    config = LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=1, num_attention_heads=2, projection_dim=32),
        text_config=LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                bos_token_id=1, eos_token_id=2),
        video_token_index=3, image_token_index=4, vision_feature_select_strategy="default",
        vision_feature_layer=-1, spatial_pool_stride=2, image_grid_pinpoints=[[32, 32]], image_seq_length=16,
        video_seq_length=4)
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    tok.save_pretrained(path)


@pytest.mark.parametrize("exact", [True, False])
def test_hf_folder_loads_prompts_with_model_card_template_and_zero_namm_is_exact(tmp_path, exact):
    _hf_folder(tmp_path / "hf")
    chat = load_video_chat(str(tmp_path / "hf"))
    assert chat.hf_template and chat.processor.tokens_per_frame == 4
    item = mlvu.MLVUItem(task="count", index=0, video="v.mp4", question="Which colour?",
                         candidates=["red", "blue", "green", "red"], answer_text="red", answer="A",
                         video_file=tmp_path / "v.mp4", duration=1.0, record={})
    prompt = chat.mlvu_prompt(item)
    assert prompt.startswith("USER: <video>\n" + mlvu.SYSTEM) and prompt.endswith("ASSISTANT: Best option:(")
    frames = np.random.default_rng(0).integers(0, 255, (8, 40, 48, 3), dtype=np.uint8)
    inputs = chat.processor(prompt, frames)
    assert inputs["input_ids"][0].tolist().count(3) == 8 * 4 and inputs["pixel_values_videos"].shape == (1, 8, 3, 32, 32)
    plain = chat.reply(frames, prompt, 6)
    with attach(chat.model, NAMM.zeros(NAMMConfig(n_up=16)), exact=exact) as session:
        assert chat.reply(frames, prompt, 6) == plain
    assert session.n_updates > 0


def test_folder_that_is_no_model_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a tiny video model"):
        load_video_chat(str(tmp_path))


def test_longvideobench_run_writes_table_counts_missing(fixtures_dir, tmp_path, capsys):
    from eval.video.__main__ import main

    data = tmp_path / "lvb"
    (data / "subtitles").mkdir(parents=True)
    shutil.copy(fixtures_dir / "longvideobench" / "lvb_val_head.json", data / "lvb_val.json")
    items = lvb.load(data)
    first = items[0]
    frames = np.stack([np.full((32, 32, 3), (37 * i) % 256, dtype=np.uint8) for i in range(191)])
    write_mp4(data / "videos" / first.video_file.name, frames, fps=1)
    (data / "subtitles" / first.subtitle_file.name).write_text(json.dumps([{"timestamp": [0.0, 20.0], "text": "red"}]))
    before = torch.get_num_threads()
    try:
        assert main(["--benchmark", "longvideobench", "--data-dir", str(data), "--subtitles", "--limit", "2",
                     "--frames", "8", "--model", "llava-video-tiny", "--policies", "full,h2o", "--n-up", "16",
                     "--out-dir", str(tmp_path / "out")]) == 0
    finally:
        torch.set_num_threads(before)
    table = capsys.readouterr().out
    assert "overall" in table and "h2o" in table and "chance" in table and "decode fps" in table
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    full = results["policies"]["full"]
    assert full["num"] == 2 and full["num_missing"] == 1 and full["missing_videos"] == [items[1].id]
    assert full["cache_fraction"] == 1.0 and results["policies"]["h2o"]["cache_fraction"] < 1.0
    assert results["chance"]["overall"] == pytest.approx(0.25)


def test_dtype_is_applied_to_the_project_models_too():
    """--dtype bfloat16 used to be ignored for the project's own video models (they loaded in float32 whatever
    the flag said, and the results recorded the flag)."""
    from eval.video.__main__ import REPO, builtin_split

    chat = load_video_chat(str(REPO / "checkpoints" / "llava-video-tiny"), torch.bfloat16)
    assert {p.dtype for p in chat.model.parameters()} == {torch.bfloat16}
    item = mlvu.load(builtin_split(4), tasks=None)[0]
    assert isinstance(chat.reply(mlvu.load_frames(item, 32), chat.mlvu_prompt(item), 2), str)
