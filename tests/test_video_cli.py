"""`python -m eval.video` on the built-in benchmark with the shipped small model."""
import json

import torch

from adapters.hf import attach
from core.namm import NAMM, NAMMConfig
from eval.video import mlvu


def test_zero_namm_answers_like_the_unmodified_small_model(tmp_path):
    from eval.video.__main__ import REPO, builtin_split
    from zoo.video.model import generate_reply, load_video_model

    model, processor = load_video_model(REPO / "checkpoints" / "llava-video-tiny")
    items = mlvu.load(builtin_split(4), tasks=None)[:4]
    for item in items:
        frames = mlvu.load_frames(item, 32)
        prompt = processor.chat_prompt(mlvu.SYSTEM, mlvu.question_text(item), mlvu.ANSWER_PREFIX)
        plain = generate_reply(model, processor, frames, prompt, 4)
        with attach(model, NAMM.zeros(NAMMConfig(n_up=16))) as session:
            assert generate_reply(model, processor, frames, prompt, 4) == plain
        assert session.n_updates > 0


def test_short_run_writes_table_and_results(tmp_path, capsys):
    from eval.video.__main__ import main

    before = torch.get_num_threads()
    try:
        assert main(["--policies", "full,h2o", "--limit", "2", "--n-test", "4", "--n-up", "16",
                     "--out-dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(before)
    table = capsys.readouterr().out
    assert "M-Avg" in table and "h2o" in table and "chance" in table and "decode fps" in table
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["policies"]["full"]["cache_fraction"] == 1.0
    assert results["policies"]["h2o"]["cache_fraction"] < 0.7
    assert (tmp_path / "accuracy_vs_cache.png").stat().st_size > 1000
