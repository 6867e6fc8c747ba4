"""The shipped tiny LLaVA-NeXT-Video loads and answers built-in benchmark items by the MLVU rule."""
from pathlib import Path

import pytest

from eval.video import mlvu
from eval.video.answering import run_mlvu
from zoo.video import make_builtin
from zoo.video.evaluate import tiny_reply_fn
from zoo.video.model import load_video_model

CKPT = Path(__file__).resolve().parents[1] / "checkpoints" / "llava-video-tiny"


def test_checkpoint_is_small():
    files = list(CKPT.iterdir())
    assert (CKPT / "model.safetensors").is_file() and (CKPT / "tiny_video_processor.json").is_file()
    assert sum(f.stat().st_size for f in files) < 20 * 2**20


def test_loads_and_answers_one_video(tmp_path):
    make_builtin.main(["--out", str(tmp_path), "--n-train", "0", "--n-test", "1", "--seed", "7"])
    model, processor = load_video_model(CKPT)
    items = mlvu.load(tmp_path / "test", tasks=None)
    frames = mlvu.load_frames(items[0], 32)
    prompt = processor.chat_prompt(mlvu.SYSTEM, mlvu.question_text(items[0]), mlvu.ANSWER_PREFIX)
    inputs = processor(prompt, frames)
    n_video = int((inputs["input_ids"] == model.config.video_token_index).sum())
    assert n_video == 32 * processor.tokens_per_frame >= 32
    assert inputs["pixel_values_videos"].shape == (1, 32, 3, 32, 32)
    rows = run_mlvu(items, tiny_reply_fn(model, processor), n_frames=32)
    assert len(rows) == 4 and not any(r["missing"] for r in rows)
    assert all(r["pred"] in ("A", "B", "C", "D") for r in rows), [r["reply"] for r in rows]


def test_missing_model_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_video_model(tmp_path / "nothing")


def test_answers_first_last_well_above_chance(tmp_path):
    # The shipped model's one skill that separates memory policies: 100% on 500 test questions, chance 25%.
    make_builtin.main(["--out", str(tmp_path), "--n-train", "0", "--n-test", "12", "--seed", "11"])
    model, processor = load_video_model(CKPT)
    items = [it for it in mlvu.load(tmp_path / "test", tasks=None) if it.task == "first_last"]
    rows = run_mlvu(items, tiny_reply_fn(model, processor), n_frames=32)
    correct = sum(r["pred"] == r["answer"] for r in rows)
    assert len(rows) == 12 and correct >= 10, rows
