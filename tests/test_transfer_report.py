"""The transfer report: each modality's results become rows with normalised scores and paired
intervals, and the kept-token analysis records what a policy really keeps."""
import math

import pytest
import torch

from core.policies import Recency
from eval.transfer import analysis, report
from tests.test_adapter_llama import tiny_llama


def test_rl_panel_normalises_by_the_full_cache_with_a_paired_interval():
    full = {"score_mean": 80.0, "scores": [70.0, 90.0, 80.0], "cache_fraction": 1.0, "seconds": 3.0, "episodes": 3}
    half = {"score_mean": 40.0, "scores": [35.0, 45.0, 40.0], "cache_fraction": 0.5, "seconds": 3.0, "episodes": 3,
            "budget": 0.5}
    panel = report.rl_panel("control", {"protocols": {"full": full, "h2o": half}})
    rows = {r.policy: r for r in panel.rows}
    assert rows["full"].normalised == 1.0 and rows["h2o"].normalised == 0.5
    low, high = rows["h2o"].interval
    assert low <= 0.5 <= high and high < 1.0  # every episode is half the full cache's: the interval is tight
    assert rows["h2o"].seconds == 1.0 and rows["h2o"].budget == 0.5


def test_video_panel_leaves_question_types_at_chance_out_of_the_normalised_score():
    def summary(first_last, needle):
        return {"per_task": {"first_last": {"acc": sum(first_last) / 4, "correct": first_last},
                             "needle": {"acc": sum(needle) / 4, "correct": needle}},
                "m_avg": (sum(first_last) + sum(needle)) / 8, "cache_fraction": 0.5, "seconds_per_item": 0.1}

    results = {"chance": {"first_last": 0.25, "needle": 0.25},
               "policies": {"full": summary([1, 1, 1, 1], [1, 0, 0, 0]), "namm": summary([1, 1, 0, 0], [0, 1, 1, 1])}}
    panel = report.video_panel("video", results)
    namm = next(r for r in panel.rows if r.policy == "namm")
    assert namm.normalised == 0.5  # needle (full 25% = chance) is not a reference: first_last alone
    assert "first_last" in panel.notes[0] and namm.interval is not None


def test_markdown_has_a_row_per_policy_with_its_interval():
    rows = [report.Row("namm", 50.0, 0.9, (0.8, 1.0), 0.4, 1.2), report.Row("h2o", 40.0, 0.7, None, 0.41, 1.0, 0.4)]
    text = report.markdown([report.Panel("language", "language", "score", rows, [])], ["# head"])
    assert "| namm | 50.0 | 0.900 [0.800, 1.000] | 0.40 | - | 1.20 |" in text
    assert "| h2o | 40.0 | 0.700 | 0.41 | 0.40 | 1.00 |" in text


def test_kept_recorder_sees_what_the_policy_keeps():
    model = tiny_llama(layers=2)
    ids = torch.randint(0, 128, (1, 64), generator=torch.Generator().manual_seed(1))
    recorder = analysis.KeptRecorder(Recency(budget=0.5, n_up=32, n_sink=0), n_layers=2)
    from adapters.hf import greedy_generate

    greedy_generate(model, ids, recorder, max_new_tokens=1)
    stats = recorder.stats
    assert stats.per_layer() == [pytest.approx(0.5), pytest.approx(0.5)]  # updates at 32 and 64 tokens
    # recency at 64 processed tokens keeps the newest 32 of every head: ages 0..31
    assert max(stats.ages) <= 31 and min(stats.ages) == 0
    assert stats.to_json()["updates"] == 4


def test_every_evaluation_of_the_transfer_report_is_at_matched_cache():
    from types import SimpleNamespace

    from eval.transfer.__main__ import plan

    full = plan(SimpleNamespace(out_dir="out", ckpt="ckpt", threads=1, quick=False))
    quick = plan(SimpleNamespace(out_dir="out", ckpt="ckpt", threads=1, quick=True))
    for step in full + quick:
        assert step.argv[step.argv.index("--budget") + 1] == "matched"
        assert step.argv[step.argv.index("--ckpt") + 1] == "ckpt"
    assert {s.module for s in full} == {"eval.lm", "eval.rl", "eval.video"}
    protocols = [s.argv[s.argv.index("--protocol") + 1] for s in full if s.module == "eval.lm"]
    assert sorted(protocols) == ["query-agnostic", "whole-prompt", "whole-prompt"]  # 1k both, 2k whole prompt
    lm = [s for s in full if s.module == "eval.lm"][0]
    assert lm.argv[lm.argv.index("--n") + 1] == "30"
    assert [s.argv[s.argv.index("--episodes") + 1] for s in full if s.module == "eval.rl"] == ["30", "30"]


def test_transfer_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, capsys):
    from eval.transfer.__main__ import main

    assert main(["--ckpt", str(tmp_path), "--out-dir", str(tmp_path / "out")]) == 2
    assert "not a NAMM checkpoint" in capsys.readouterr().err


def test_the_report_tests_video_on_the_smollm2_llava_at_prompts_longer_than_an_update_interval():
    """The tiny video model answered only first_last and its prompts were shorter than n_up; the report's
    video step uses the shipped SmolLM2 LLaVA at 64 frames (about 1.7k tokens) with answers in words."""
    from types import SimpleNamespace

    from eval.transfer.__main__ import plan
    from eval.video.__main__ import REPO, shipped_model

    for quick in (False, True):
        (video,) = [s for s in plan(SimpleNamespace(out_dir="out", ckpt="ckpt", threads=1, quick=quick))
                    if s.module == "eval.video"]
        arg = lambda flag: video.argv[video.argv.index(flag) + 1]  # noqa: E731
        assert shipped_model(arg("--model")) == str(REPO / "checkpoints" / "llava-video-smollm2")
        assert int(arg("--frames")) >= 64 and arg("--answer-format") == "words"
        assert arg("--limit") == ("1" if quick else "20")
    assert shipped_model("no-such-model") == "no-such-model"  # a Hugging Face name passes through


def test_a_top_k_namm_is_compared_at_fixed_budgets_a_table_per_budget(tmp_path, monkeypatch):
    """A top-k NAMM obeys a budget like every baseline: the report runs each evaluation as a sweep over
    0.5 and 0.25 and makes a panel per budget; a threshold NAMM stays at matched cache."""
    import json
    from types import SimpleNamespace

    import eval.lm.__main__ as lm_cli
    from core.namm import NAMM, NAMMConfig
    from eval.transfer.__main__ import default_budget, panel_for, plan, run_step

    topk, paper = tmp_path / "topk", tmp_path / "paper"
    NAMM(NAMMConfig(features="namm_x", selection="topk", budget=0.25, head_mode="shared")).save_pretrained(topk)
    NAMM.zeros().save_pretrained(paper)
    assert default_budget(str(topk)) == "0.5,0.25"
    assert default_budget(str(topk), quick=True) == "0.5"  # the smoke test: one budget
    assert default_budget(str(paper)) == "matched"
    steps = plan(SimpleNamespace(out_dir=str(tmp_path / "out"), ckpt=str(topk), threads=1, quick=True,
                                 budget="0.5,0.25"))
    assert {s.argv[s.argv.index("--budget") + 1] for s in steps} == {"0.5,0.25"}
    lm = [s for s in steps if s.module == "eval.lm"][0]
    assert "expected_attention" in lm.argv[lm.argv.index("--policies") + 1].split(",")

    def fake_main(argv):  # what eval.lm writes for a sweep: one results.json per budget
        for b, fraction in (("0.5", 0.5), ("0.25", 0.25)):
            folder = lm.out / f"budget-{b}"
            folder.mkdir(parents=True)
            summary = {p: {"mean_score": 50.0, "normalised_score": 1.0, "normalised_ci95": [1.0, 1.0],
                           "cache_fraction": fraction if p != "full" else 1.0} for p in ("full", "namm")}
            policies = {p: {"passkey": {"seconds_per_item": 1.0, **({"budget": fraction} if p != "full" else {})}}
                        for p in summary}
            (folder / "results.json").write_text(json.dumps({"summary": summary, "policies": policies}))
        return 0

    monkeypatch.setattr(lm_cli, "main", fake_main)
    runs = run_step(lm)
    assert [b for b, _ in runs] == ["0.5", "0.25"]
    panels = [panel_for(lm, b, r, True) for b, r in runs]
    assert [p.name.endswith(f"budget {b}") for p, (b, _) in zip(panels, runs)] == [True, True]
    assert [r.budget for r in panels[1].rows if r.policy == "namm"] == [0.25]
