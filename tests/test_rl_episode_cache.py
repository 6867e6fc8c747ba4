"""The Decision Transformer under memory policies: an episode-long KV cache."""
import json
from pathlib import Path

import pytest
import torch

from adapters.decision_transformer import EpisodeActor
from adapters.hf import attach
from core.namm import NAMM, NAMMConfig
from core.policies import FullCache, H2O
from eval.rl.dt_model import load_dt
from eval.rl.rollout import run_batch

DT = Path(__file__).resolve().parents[1] / "checkpoints" / "dt-hopper"


def recorded_rollout(bundle, policy, steps, seeds=(0,), exact=False):
    actions, histories = [], []

    with attach(bundle.model, policy, exact=exact) as session:
        actor = EpisodeActor(session)

        def act(b, history, rows, state):
            out = actor(b, history, rows, state)
            actions.append(out.clone())
            histories.append(history)
            return out

        returns, _, _ = run_batch(bundle, "hopper", list(seeds), act_fn=act, max_steps=steps)
    return actions, histories[-1], returns, actor


def test_stepping_with_the_cache_matches_the_full_forward(one_thread):
    bundle = load_dt(DT)
    steps = 40
    actions, history, _, _ = recorded_rollout(bundle, FullCache(), steps)
    n = len(actions)
    with torch.no_grad():
        _, preds, _ = bundle.model(
            states=history.states[:1, :n], actions=history.actions[:1, :n], rewards=history.rewards[:1, :n],
            returns_to_go=history.returns_to_go[:1, :n], timesteps=history.timesteps[:1, :n],
            attention_mask=torch.ones(1, n, dtype=torch.long), return_dict=False)
    stepped = torch.stack([a[0] for a in actions])
    assert (stepped - preds[0]).abs().max().item() < 1e-5


@pytest.mark.parametrize("exact", [True, False])
def test_zero_namm_takes_the_full_cache_actions(exact, one_thread):
    """Bit for bit on the exact path; within rounding on the default path (one attention computation)."""
    bundle = load_dt(DT)
    full, _, full_returns, _ = recorded_rollout(bundle, FullCache(), 120, seeds=(0, 1))
    zero, _, zero_returns, actor = recorded_rollout(bundle, NAMM.zeros(NAMMConfig(n_up=32)), 120, seeds=(0, 1),
                                                    exact=exact)
    assert actor.session.n_updates > 0
    assert len(full) == len(zero)
    if exact:
        assert all(torch.equal(a, b) for a, b in zip(full, zero))
        assert (full_returns == zero_returns).all()
    else:
        assert max((a - b).abs().max().item() for a, b in zip(full, zero)) < 1e-5
        assert full_returns == pytest.approx(zero_returns, rel=1e-4)


def test_a_budget_policy_evicts_from_the_episode_cache(one_thread):
    bundle = load_dt(DT)
    _, _, _, actor = recorded_rollout(bundle, H2O(0.5, n_up=32), 60)
    assert 0.4 < actor.episode_fractions()[0] < 0.7


def test_short_cli_run_writes_table_json_and_plot(tmp_path, capsys, one_thread):
    from eval.rl.__main__ import main

    out = tmp_path / "rl"
    assert main(["--env", "hopper", "--policies", "window,full,h2o", "--episodes", "2", "--batch", "2",
                 "--max-steps", "40", "--out-dir", str(out)]) == 0
    table = capsys.readouterr().out
    assert "window" in table and "h2o" in table and "normalised" in table
    results = json.loads((out / "results.json").read_text())
    assert set(results["protocols"]) == {"window", "full", "h2o"}
    assert results["protocols"]["full"]["cache_fraction"] == 1.0
    assert (out / "score_vs_cache.png").stat().st_size > 1000
