"""kvzip on video: one compression at the prompt's end, after the prompt (frame features included) is fed
again in chunks; the same replies as the full cache where it keeps everything, and a one-line refusal where
the schedule updates inside the prompt."""
import json

import torch

from eval.video import mlvu

TINY = ["--model", "llava-video-tiny", "--frames", "32", "--answer-format", "letter", "--n-test", "4"]


def test_kvzip_keeping_everything_replies_as_the_full_cache_and_halves_the_cache_at_half(tmp_path, one_thread):
    from eval.video.__main__ import REPO, builtin_split
    from eval.video.models import load_video_chat
    from core.policies import KVzip

    chat = load_video_chat(str(REPO / "checkpoints" / "llava-video-tiny"))
    for item in mlvu.load(builtin_split(4), tasks=None)[:3]:
        frames = mlvu.load_frames(item, 32)
        prompt = chat.mlvu_prompt(item)
        plain = chat.reply(frames, prompt, 4)  # model.generate, nothing attached
        kept_all, gen = chat.reply_compressed(frames, prompt, 4, KVzip(1.0, n_up=10**6))
        assert kept_all == plain and gen.replay_seconds > 0
        _, half = chat.reply_compressed(frames, prompt, 4, KVzip(0.5, n_up=10**6))
        n = half.processed_tokens - len(half.tokens[0]) + 1  # the prompt (the last reply token is not fed)
        assert abs(half.fraction_at_update - 0.5) < 2 / n


def test_the_cli_runs_kvzip_at_the_prompt_end_and_reports_its_cost(tmp_path, capsys):
    from eval.video.__main__ import main

    before = torch.get_num_threads()
    try:
        assert main([*TINY, "--policies", "full,kvzip", "--budget", "0.5", "--limit", "1", "--n-up", "4096",
                     "--out-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        zipped = json.loads((tmp_path / "results.json").read_text())["policies"]["kvzip"]
        assert 0.45 < zipped["cache_fraction"] < 0.6
        assert 0 < zipped["replay_seconds_per_item"] < zipped["seconds_per_item"]
        assert "kvzip:" in out and "reconstruct the prompt" in out
        # a schedule that updates every 64 tokens, inside a 32-frame prompt: one line, exit 2
        assert main([*TINY, "--policies", "kvzip", "--budget", "0.5", "--limit", "1", "--n-up", "64",
                     "--out-dir", str(tmp_path / "inside")]) == 2
    finally:
        torch.set_num_threads(before)
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading bar
    assert last.startswith("error: --policies kvzip") and "kvzip cannot run" in last and "--n-up" in last


def test_query_agnostic_compresses_the_video_before_the_question_is_read(tmp_path, capsys, one_thread):
    from core.registry import make_policy
    from eval.video.__main__ import REPO, builtin_split, main
    from eval.video.models import load_video_chat

    chat = load_video_chat(str(REPO / "checkpoints" / "llava-video-tiny"))
    item = mlvu.load(builtin_split(4), tasks=None)[0]
    frames, prompt = mlvu.load_frames(item, 32), chat.mlvu_prompt(item)
    text, full = chat.reply_compressed(frames, prompt, 4, make_policy("full"), context="video")
    assert text == chat.reply(frames, prompt, 4)  # nothing evicted: the reply of model.generate
    _, half = chat.reply_compressed(frames, prompt, 4, make_policy("h2o", 0.5, n_up=10**6), context="video")
    ids = chat.processor(prompt, frames)["input_ids"]
    video_end = int((ids[0] == chat.processor.tokenizer.video_token_id).nonzero()[-1]) + 1
    question = ids.shape[1] - video_end
    assert abs(half.fraction_at_update - 0.5) < 2 / video_end  # the context alone was compressed
    assert half.kept_tokens[0] == half.kept_tokens[-1] > -(-video_end // 2) + question - 1  # the question kept
    before = torch.get_num_threads()
    try:
        assert main([*TINY, "--protocol", "query-agnostic", "--policies", "full,h2o,kvzip", "--budget", "0.5",
                     "--limit", "1", "--n-up", "4096", "--out-dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(before)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["protocol"] == "query-agnostic" and results["policies"]["full"]["cache_fraction"] == 1.0
    stored = [json.loads(p.read_text())["settings"] for p in (tmp_path / "policies").glob("*.json")]
    assert len(stored) == 3 and all(s["protocol"] == "query-agnostic" for s in stored)
    assert "protocol: query-agnostic" in capsys.readouterr().out
