"""The SmolLM2 LLaVA-NeXT-Video: adapters, the frame tokens both stages share, and the saved model."""
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from eval.video import mlvu
from zoo.video.frame_text import FrameText, letter_ids, prompt_parts
from zoo.video.lora import LoRALinear, add_lora, load_lora_state_dict, lora_state_dict, merge_lora
from zoo.video.render import draw
from zoo.video.scenes import make_video


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def test_a_new_adapter_changes_nothing_and_only_adapters_train():
    model, x = _mlp(), torch.randn(3, 8)
    before = model(x)
    wrapped = add_lora(model, r=2, alpha=4, targets=("0", "2"))
    assert wrapped == ["0", "2"] and isinstance(model[0], LoRALinear)
    assert torch.equal(model(x), before)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "0.lora_a", "0.lora_b", "2.lora_a", "2.lora_b"}


def test_merged_weights_compute_what_the_adapters_computed_and_state_round_trips():
    model, x = _mlp(), torch.randn(3, 8)
    add_lora(model, r=2, alpha=4, targets=("0", "2"))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
    adapted = model(x)
    other = _mlp()
    add_lora(other, r=2, alpha=4, targets=("0", "2"))
    load_lora_state_dict(other, lora_state_dict(model))
    assert torch.equal(other(x), adapted)
    merge_lora(other)
    assert all(type(m) is nn.Linear for m in (other[0], other[2]))
    assert torch.allclose(other(x), adapted, atol=1e-5)
    with pytest.raises(ValueError, match="adapter keys do not match"):
        load_lora_state_dict(model, {"0.lora_a": torch.zeros(2, 8)})


def test_a_frame_is_its_caption_then_background_and_the_prompt_surrounds_the_video(smollm2):
    _, tok = smollm2
    frames = FrameText(tok, 25)
    red_circle = frames.frame_ids(("circle", "red"))
    assert len(red_circle) == 25 and tok.decode(red_circle[:2]) == " red circle"
    assert set(red_circle[2:]) == set(frames.frame_ids(None)) == set(frames.background)
    assert len(frames.frame_ids(("cross", "magenta"))) == 25  # magenta is two tokens
    with pytest.raises(ValueError, match="tokens_per_frame"):
        FrameText(tok, 2)
    before, after = prompt_parts(tok, "What colour is the cross?", ["red", "green", "blue", "yellow"])
    text = tok.decode(before + frames.frame_ids(None) + after)
    assert text.index(mlvu.SYSTEM.strip()) < text.index(" black") < text.index("What colour is the cross?")
    assert text.endswith(mlvu.ANSWER_PREFIX)
    assert [tok.decode([i]) for i in letter_ids(tok, 4)] == ["A", "B", "C", "D"]


@pytest.fixture(scope="module")
def smol_model():
    from zoo.video.smol_llava import build

    return build()


def test_the_video_prompt_holds_the_ids_the_language_stage_trained_on(smollm2, smol_model):
    """Stage 1 trains on prompt_parts' ids around the frames; eval.video must give the same ids around the
    video placeholders, or the fine-tuned model is evaluated on a prompt it never saw."""
    _, tok = smollm2
    model, processor = smol_model
    spec, questions = make_video(random.Random(0), "v", 8, 2, 1)
    q = questions["order"]
    prompt = processor.chat_prompt(mlvu.SYSTEM, mlvu.question_block(q["question"], q["candidates"]), mlvu.ANSWER_PREFIX)
    ids = processor.expand_ids(prompt, spec.n_frames)
    before, after = prompt_parts(tok, q["question"], q["candidates"])
    n_video = spec.n_frames * processor.tokens_per_frame
    assert processor.tokens_per_frame == 25
    assert ids == before + [model.config.video_token_index] * n_video + after


def test_the_words_prompt_holds_the_ids_the_language_stage_trained_on(smollm2, smol_model):
    from eval.video.models import VideoChat
    from zoo.video.frame_text import word_prompt_parts

    _, tok = smollm2
    model, processor = smol_model
    spec, questions = make_video(random.Random(1), "v", 8, 2, 1)
    q = questions["count"]
    item = mlvu.MLVUItem("count", 0, "v.mp4", q["question"], q["candidates"], q["answer"], "A", None, None, {})
    prompt = VideoChat(model, processor, "smol", hf_template=False).mlvu_words_prompt(item)
    before, after = word_prompt_parts(tok, q["question"])
    n_video = spec.n_frames * processor.tokens_per_frame
    assert processor.expand_ids(prompt, spec.n_frames) == before + [model.config.video_token_index] * n_video + after


def test_saved_model_loads_with_its_trained_weights_and_answers_identically(smol_model, tmp_path):
    from zoo.video.smol_llava import ADAPTER_FILE, load_smol_llava, save_smol_llava

    model, processor = smol_model
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.model.multi_modal_projector.parameters():
            p.add_(0.01 * torch.randn_like(p))
    adapter_model = model.model.language_model
    add_lora(adapter_model, r=2, alpha=4, targets=("q_proj",))
    with torch.no_grad():
        for layer in adapter_model.layers:
            layer.self_attn.q_proj.lora_b.normal_(0, 0.01)
    adapter = lora_state_dict(adapter_model)
    frames = np.stack([draw("circle", "red", 64), draw(None, None, 64)] * 3)
    inputs = processor(processor.chat_prompt(mlvu.SYSTEM, "Question: what?", mlvu.ANSWER_PREFIX), frames)
    with torch.no_grad():
        expected = model(**inputs).logits
    save_smol_llava(tmp_path, model, adapter, {"lora_rank": 2, "lora_alpha": 4, "lora_targets": ["q_proj"]})
    merge_lora(adapter_model)
    assert (tmp_path / ADAPTER_FILE).stat().st_size < 2_000_000
    loaded, _ = load_smol_llava(tmp_path)
    with torch.no_grad():
        got = loaded(**inputs).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert got[0, -1].argmax() == expected[0, -1].argmax()


def test_a_folder_without_its_description_is_refused_by_name(tmp_path):
    from zoo.video.smol_llava import load_smol_llava

    with pytest.raises(FileNotFoundError, match="smol_llava.json"):
        load_smol_llava(tmp_path)
    (tmp_path / "smol_llava.json").write_text('{"base": "smollm2"}')
    with pytest.raises(ValueError, match="lora_rank"):
        load_smol_llava(tmp_path)


def test_questions_sharing_the_video_prefix_get_the_logits_and_gradients_of_full_sequences(smollm2):
    from zoo.video.lm_stage import examples, video_logits

    model, tok = smollm2
    frames = FrameText(tok, 3)
    ex = examples(random.Random(2), tok, frames, 8, 2)
    assert len({tuple(e[0]) for e in ex}) == 1 and len({len(e[1]) for e in ex}) > 1  # padding is exercised
    layer = model.model.layers[-1].mlp.down_proj.weight
    before = layer.requires_grad
    layer.requires_grad_(True)
    try:
        shared = video_logits(model, ex)
        shared.sum().backward()
        grad_shared, layer.grad = layer.grad.clone(), None
        full = torch.stack([model(input_ids=torch.tensor([e[0] + e[1]])).logits[0, -1, e[2]] for e in ex])
        full.sum().backward()
        assert torch.allclose(shared, full, atol=1e-4)
        assert torch.allclose(grad_shared, layer.grad, atol=1e-4, rtol=1e-3)
    finally:
        layer.grad = None
        layer.requires_grad_(before)


def test_word_answers_are_told_apart_by_one_token_after_what_they_share(smollm2):
    from zoo.video.frame_text import word_ids

    _, tok = smollm2
    shared, ids = word_ids(tok, ["1", "2", "3", "4"])
    assert [tok.decode(shared + [i]) for i in ids] == [" 1", " 2", " 3", " 4"]
    shared, ids = word_ids(tok, ["red", "green", "blue", "yellow"])
    assert shared == [] and [tok.decode([i]) for i in ids] == [" red", " green", " blue", " yellow"]


def test_a_committed_compact_copy_continues_training_where_the_stage_stopped(tmp_path):
    from safetensors.torch import load_file

    from zoo.video import lm_stage

    run, copy = tmp_path / "run", tmp_path / "copy"
    small = ["--segments", "4,4", "--tokens-per-frame", "3,5", "--videos-per-step", "1", "--eval-every", "1",
             "--eval-videos", "1", "--eval-segments", "4", "--rank", "2", "--alpha", "4", "--warmup", "1"]
    assert lm_stage.main(["--out", str(run), "--steps", "1", *small]) == 0
    assert lm_stage.main(["--out", str(run), "--copy-to", str(copy)]) == 0
    full, compact = load_file(str(run / lm_stage.ADAPTER)), load_file(str(copy / lm_stage.ADAPTER))
    assert compact.keys() == full.keys() and all(v.dtype == torch.bfloat16 for v in compact.values())
    assert not (copy / lm_stage.STATE).exists() and not list(copy.glob("*.tmp"))
    assert lm_stage.main(["--out", str(copy), "--steps", "2", *small]) == 0
    rows = [json.loads(line) for line in (copy / lm_stage.LOG).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # the copied log, then the continued step
    assert rows[-1]["tokens_per_frame"] == 5  # evaluated at the top of the drawn range
    with pytest.raises(ValueError, match="rank 2"):
        lm_stage.main(["--out", str(copy), "--steps", "3", *small[:-4], "--rank", "4", "--alpha", "4"])


@pytest.mark.parametrize("exact", [True, False])
def test_the_all_zero_namm_gives_the_unmodified_logits_on_a_long_video_prompt(smol_model, exact):
    """64 frames of 25 tokens: a prompt of over 1.6k tokens on which the NAMM updates at its own cadence (every
    512 tokens, no update forced at the prompt's end), scores every token and keeps them all: bit for bit on
    the exact path, within rounding on the default path."""
    from adapters.hf import attach
    from core.namm import NAMM, NAMMConfig
    from tests.test_adapter_llama import assert_like_unmodified

    model, processor = smol_model
    spec, questions = make_video(random.Random(3), "v", 32, 2, 1)
    frames = np.stack([draw(*(s or (None, None)), 64) for s in spec.segments for _ in range(2)])
    q = questions["needle"]
    prompt = processor.chat_prompt(mlvu.SYSTEM, mlvu.question_block(q["question"], q["candidates"]), mlvu.ANSWER_PREFIX)
    inputs = processor(prompt, frames)
    assert inputs["input_ids"].shape[1] >= 1600
    kwargs = dict(**inputs, max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True)
    plain = model.generate(**kwargs)
    namm = NAMM.zeros(NAMMConfig())
    assert (namm.schedule.n_up, namm.schedule.at_prompt_end) == (512, False)
    with attach(model, namm, exact=exact) as session:
        out = model.generate(**kwargs)
    assert session.n_updates >= 3
    assert torch.equal(out.sequences, plain.sequences)
    # SmolLM2's 30 layers of other rounding on the default path: up to 3.1e-5 measured (as in test_adapter_llama)
    assert_like_unmodified(out.logits, plain.logits, exact, atol=1e-4)


def test_the_rebuild_command_runs_its_phases_and_writes_a_model_eval_video_loads(tmp_path, monkeypatch):
    from eval.video.models import load_video_chat
    from zoo.video import build_smol

    monkeypatch.setattr(build_smol, "PHASES", ({"steps": 1, "segments": "4,4", "tokens-per-frame": "3"},
                                               {"steps": 2, "segments": "4,4", "tokens-per-frame": "3,4",
                                                "extra": "count:1"}))
    monkeypatch.setattr(build_smol, "COMMON", {**build_smol.COMMON, "videos-per-step": 1, "eval-videos": 1,
                                               "eval-segments": 4, "rank": 2, "alpha": 4.0})
    monkeypatch.setattr(build_smol, "VISION_STEPS", 2)
    out = tmp_path / "model"
    assert build_smol.main(["--work", str(tmp_path / "work"), "--out", str(out), "--threads", "1"]) == 0
    meta = json.loads((out / "smol_llava.json").read_text())
    assert meta["lm_stage"]["steps"] == 2 and meta["lora_rank"] == 2 and meta["vision_stage"]["steps"] == 2
    from safetensors.torch import load_file

    assert {v.dtype for v in load_file(str(out / "lm_adapter.safetensors")).values()} == {torch.bfloat16}
    assert (out / build_smol.LOG_COPY).read_text() == (tmp_path / "work" / "log.jsonl").read_text()
    chat = load_video_chat(str(out))
    assert chat.name == "model" and chat.processor.tokens_per_frame == 25


def test_the_shipped_model_loads_from_the_repository_and_answers_from_the_video():
    """The committed folder (adapters and vision tower only) on generated test videos it never saw, 64 frames:
    questions whose evidence is one segment anywhere in the video, answered in words."""
    from eval.video.__main__ import REPO, builtin_split
    from eval.video.models import load_video_chat

    chat = load_video_chat(str(REPO / "checkpoints" / "llava-video-smollm2"))
    items = [it for it in mlvu.load(builtin_split(4), tasks=None) if it.task in ("needle", "order")]
    rows = [mlvu.score(it, chat.reply(mlvu.load_frames(it, 64), chat.mlvu_words_prompt(it), 4), "words") for it in items]
    assert len(rows) == 8 and sum(r["correct"] for r in rows) >= 6, rows
