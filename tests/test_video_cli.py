"""`python -m eval.video` on the built-in benchmark with the shipped small model (named explicitly: the CLI's
default is the SmolLM2 LLaVA at 64 frames, answered in words)."""
import json

import pytest
import torch

from adapters.hf import attach
from core.namm import NAMM, NAMMConfig
from eval.video import mlvu

TINY = ["--model", "llava-video-tiny", "--frames", "32"]  # the fast smoke-test model and its training frame count


@pytest.mark.parametrize("exact", [True, False])
def test_zero_namm_answers_like_the_unmodified_small_model(tmp_path, exact):
    from eval.video.__main__ import REPO, builtin_split
    from zoo.video.model import generate_reply, load_video_model

    model, processor = load_video_model(REPO / "checkpoints" / "llava-video-tiny")
    items = mlvu.load(builtin_split(4), tasks=None)[:4]
    for item in items:
        frames = mlvu.load_frames(item, 32)
        prompt = processor.chat_prompt(mlvu.SYSTEM, mlvu.question_text(item), mlvu.ANSWER_PREFIX)
        plain = generate_reply(model, processor, frames, prompt, 4)
        with attach(model, NAMM.zeros(NAMMConfig(n_up=16)), exact=exact) as session:
            assert generate_reply(model, processor, frames, prompt, 4) == plain
        assert session.n_updates > 0


def test_short_run_writes_table_and_results(tmp_path, capsys):
    from eval.video.__main__ import main

    before = torch.get_num_threads()
    try:
        assert main([*TINY, "--answer-format", "letter", "--policies", "full,h2o", "--limit", "2", "--n-test", "4",
                     "--n-up", "16", "--out-dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(before)
    table = capsys.readouterr().out
    assert "M-Avg" in table and "h2o" in table and "chance" in table and "decode fps" in table
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["policies"]["full"]["cache_fraction"] == 1.0
    assert results["policies"]["h2o"]["cache_fraction"] < 0.7
    assert (tmp_path / "accuracy_vs_cache.png").stat().st_size > 1000


def test_matched_budgets_item_by_item_on_one_schedule(tmp_path, monkeypatch, capsys, window_namm):
    """The NAMM keeps 21 tokens at every update (n_up 32 and at the prompt's end). Each baseline gets, item
    by item, the NAMM's fraction after its last update and keeps as many tokens then, within one; every
    policy built for the run (one per item for a matched baseline) shares one schedule object."""
    import eval.video.__main__ as video

    seen, real = [], video.attach

    def recording_attach(model, policy, *args, **kwargs):
        seen.append(policy)
        return real(model, policy, *args, **kwargs)

    monkeypatch.setattr(video, "attach", recording_attach)
    before = torch.get_num_threads()
    try:
        assert video.main([*TINY, "--answer-format", "letter", "--policies", "h2o,namm,recency", "--budget", "matched", "--limit", "1", "--n-test", "4",
                           "--ckpt", str(window_namm(window=20, n_up=32, at_prompt_end=True)), "--threads", "1",
                           "--out-dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(before)
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["policies"]) == ["namm", "h2o", "recency"]
    assert results["budget_mode"].startswith("matched per item")
    namm = results["policies"]["namm"]["fractions_at_update"]
    assert len(namm) == 4 and all(f < 0.5 for f in namm.values())
    for baseline in ("h2o", "recency"):
        summary = results["policies"][baseline]
        assert summary["budgets"] == namm
        for item, fraction in summary["fractions_at_update"].items():
            assert abs(fraction - namm[item]) * (21 / namm[item]) <= 1 + 1e-6  # 21 / f: tokens at that update
    assert len(seen) == 12 and len({id(p.schedule) for p in seen}) == 1
    assert (seen[0].n_up, seen[0].update_at_prompt_end) == (32, True)
    out = capsys.readouterr().out
    assert "every policy: update every 32 tokens and at prompt end (set by the NAMM checkpoint's config.json)" in out


def test_a_builtin_split_of_another_size_is_never_reused(tmp_path, monkeypatch):
    import eval.video.__main__ as video

    monkeypatch.setattr(video, "BUILTIN", tmp_path)
    small, large = video.builtin_split(1), video.builtin_split(2)
    assert small != large
    assert len(mlvu.load(small, tasks=None)) == 4 and len(mlvu.load(large, tasks=None)) == 8  # 4 question types


def test_words_format_asks_without_options_and_is_recorded(tmp_path, capsys, monkeypatch):
    from eval.video import __main__ as video
    from eval.video.models import VideoChat

    asked = []
    real = VideoChat.reply
    monkeypatch.setattr(VideoChat, "reply", lambda self, frames, prompt, n: asked.append(prompt) or real(self, frames, prompt, n))
    assert video.main([*TINY, "--policies", "full", "--limit", "1", "--n-test", "4", "--answer-format", "words",
                       "--out-dir", str(tmp_path)]) == 0
    assert asked and all(p.endswith(mlvu.WORDS_ANSWER_PREFIX) and "Options:" not in p for p in asked)
    assert "answer format: words" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["answer_format"] == "words" and results["policies"]["full"]["num"] == 4


class _Parsed(Exception):
    pass


@pytest.mark.parametrize("argv, answer_format", [
    ([], "words"),
    (["--benchmark", "longvideobench", "--data-dir", "."], "letter"),  # scored by its official letter rule only
])
def test_defaults_are_the_smollm2_llava_settings_that_separate_policies(monkeypatch, argv, answer_format):
    """`python -m eval.video --ckpt DIR` runs the model that separates policies (the SmolLM2 LLaVA at 64 frames,
    answered in words), not the tiny smoke-test model, which answers only first_last above chance."""
    import eval.video.__main__ as video

    seen = []

    def record(args):
        seen.append(args)
        raise _Parsed

    monkeypatch.setattr(video, "validate_args", record)
    with pytest.raises(_Parsed):
        video.main(argv)
    args = seen[0]
    assert args.model == str(video.REPO / "checkpoints" / "llava-video-smollm2")
    assert (args.frames, args.answer_format) == (64, answer_format)


def test_a_budget_list_is_one_run_with_a_sweep_table(tmp_path, capsys):
    """--budget 0.5,0.25: each budget's results in budget-<b>/, the full cache run once for both, and the
    budgets table of eval.video.budgets (paired differences to the NAMM) over them."""
    from eval.video.__main__ import main

    before = torch.get_num_threads()
    try:
        assert main([*TINY, "--answer-format", "letter", "--policies", "full,namm,h2o", "--ckpt", "zeros",
                     "--budget", "0.5,0.25", "--limit", "1", "--n-test", "4", "--n-up", "16",
                     "--out-dir", str(tmp_path)]) == 0
    finally:
        torch.set_num_threads(before)
    for b in ("0.5", "0.25"):
        results = json.loads((tmp_path / f"budget-{b}" / "results.json").read_text())
        assert results["budget"] == float(b)
        assert results["policies"]["h2o"]["budget"] == float(b)
    stored = sorted(p.name.split(".")[0] for p in (tmp_path / "policies").glob("*.json"))
    assert stored == ["full", "h2o", "h2o", "namm"]  # full and the (threshold) NAMM ran once for both budgets
    sweep = json.loads((tmp_path / "sweep.json").read_text())
    assert {float(r["budget"]) for r in sweep["rows"].values() if r["policy"] == "h2o"} == {0.5, 0.25}
    assert (tmp_path / "sweep.md").is_file() and (tmp_path / "sweep.png").stat().st_size > 1000
