"""The attention path (issue 27) in the eval CLIs: every one takes --exact, and a policy that reads attention
keys its stored results by the path, a result without the field counting as made on the exact path."""
from pathlib import Path

import pytest

from eval import policy_setup

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, reads", [("namm", True), ("h2o", True), ("tova", True), ("snapkv", True),
                                         ("adakv(snapkv)", True), ("full", False), ("l2", False),
                                         ("recency", False), ("expected_attention", False), ("window", False)])
def test_only_policies_that_read_attention_are_keyed_by_the_path(name, reads):
    assert policy_setup.reads_attention(name) is reads
    assert policy_setup.path_settings(name, exact=True) == {}  # as every result stored before the field
    assert policy_setup.path_settings(name, exact=False) == ({"exact": False} if reads else {})


def test_every_eval_cli_takes_exact():
    from eval.lm.__main__ import build_parser as lm_parser
    from eval.rl.__main__ import build_parser as rl_parser
    from eval.video.__main__ import build_parser as video_parser

    assert lm_parser().parse_args(["run", "--exact"]).exact and not lm_parser().parse_args(["run"]).exact
    assert rl_parser().parse_args(["--exact"]).exact and not rl_parser().parse_args([]).exact
    assert video_parser().parse_args(["--exact"]).exact and not video_parser().parse_args([]).exact


def test_the_setup_and_results_record_the_path():
    from eval.rl.__main__ import build_parser

    for argv, exact in (([], False), (["--exact"], True)):
        args = build_parser().parse_args(["--policies", "full,h2o", *argv])
        setup = policy_setup.resolve(args, ["full", "h2o"], policy_setup.Schedule(32))
        assert setup.exact is exact and setup.as_json()["exact"] is exact
        assert ("attention: exact" in setup.header()) is exact


def test_rl_and_video_result_keys_carry_the_default_path():
    from eval.rl.__main__ import build_parser as rl_parser, protocol_settings
    from eval.video.__main__ import build_parser as video_parser, policy_settings

    schedule = policy_setup.Schedule(32)
    dt = REPO / "checkpoints" / "dt-hopper"
    for argv, expected in (([], {"exact": False}), (["--exact"], {})):
        rl = rl_parser().parse_args(argv)
        assert {k: v for k, v in protocol_settings(rl, "h2o", "hopper", dt, None, schedule).items()
                if k == "exact"} == expected
        assert "exact" not in protocol_settings(rl, "full", "hopper", dt, None, schedule)
        video = video_parser().parse_args(argv)
        assert {k: v for k, v in policy_settings(video, "tova", None, schedule).items() if k == "exact"} == expected
        assert "exact" not in policy_settings(video, "l2", None, schedule)


def test_the_demo_and_transfer_commands_take_exact(monkeypatch):
    from types import SimpleNamespace

    from eval.transfer.__main__ import plan

    steps = plan(SimpleNamespace(out_dir="out", ckpt="ckpt", threads=1, quick=True, exact=True))
    assert steps and all("--exact" in s.argv for s in steps)
    assert not any("--exact" in s.argv for s in plan(SimpleNamespace(out_dir="out", ckpt="ckpt", threads=1,
                                                                     quick=True)))
    import eval.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run", lambda args, setup: seen.setdefault("exact", setup.exact) and [])
    monkeypatch.setattr(demo, "print_table", lambda rows, args, setup: None)
    demo.main(["--policies", "full,h2o", "--exact"])
    assert seen["exact"] is True
