"""The shipped Decision Transformer loads and runs a short window-protocol rollout."""
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.rl.dt_model import load_dt, save_dt
from eval.rl.rollout import evaluate, window_action

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"hopper": REPO / "checkpoints" / "dt-hopper",
           "walker2d": REPO / "checkpoints" / "dt-walker2d"}


def _shipped(env):
    path = SHIPPED[env]
    if not (path / "model.safetensors").is_file():
        if env == "hopper":
            pytest.fail(f"shipped checkpoint missing: {path.relative_to(REPO)}")
        pytest.skip(f"{path.relative_to(REPO)} not shipped")
    return path


@pytest.mark.parametrize("env", ["hopper", "walker2d"])
def test_shipped_dt_loads_and_rolls_out(env, one_thread):
    path = _shipped(env)
    assert sum(f.stat().st_size for f in path.iterdir()) < 5 * 2 ** 20
    bundle = load_dt(path)
    assert bundle.env == env and bundle.context == 20 and bundle.scale == 1000.0
    assert bundle.state_mean.shape == (bundle.state_dim,) and (bundle.state_std > 0).all()
    assert bundle.target_return > 0
    res = evaluate(bundle, episodes=1, batch_size=1, max_steps=25)
    assert res.env_steps == res.lengths[0] <= 25
    assert np.isfinite(res.returns).all() and res.steps_per_second > 0
    summary = res.summary()
    assert summary["protocol"] == "window_action" and summary["episodes"] == 1


def test_foreign_hf_checkpoint_loads_with_overrides(tmp_path):
    from zoo.dt.train import build_model
    model = build_model(state_dim=11, act_dim=3, hidden=16, layers=1, heads=1, context=20)
    model.save_pretrained(tmp_path / "hf")  # plain HF folder, no dt_meta.json
    with pytest.warns(UserWarning, match="state_mean"):
        bundle = load_dt(tmp_path / "hf", env="hopper")
    assert bundle.target_return == 3600.0 and bundle.scale == 1000.0
    np.testing.assert_array_equal(bundle.state_std, np.ones(11))
    bundle = load_dt(tmp_path / "hf", env="Hopper-v5", state_mean=[0.5] * 11,
                     state_std=[2.0] * 11, target_return=1800)
    assert bundle.target_return == 1800 and bundle.state_std[0] == 2.0
    save_dt(bundle.model, tmp_path / "ours", {"env": "hopper", "target_return": 1234.0,
                                              "state_mean": [0.0] * 11, "state_std": [1.0] * 11})
    assert load_dt(tmp_path / "ours").target_return == 1234.0
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_dt(tmp_path / "nothing")


def test_window_action_matches_unpadded_call_for_full_window(one_thread):
    """With a full K-step history the window call equals a direct model call on it."""
    from eval.rl.rollout import History
    from zoo.dt.train import build_model
    torch.manual_seed(0)
    model = build_model(state_dim=4, act_dim=2, hidden=16, layers=1, heads=1, context=5).eval()
    from eval.rl.dt_model import DTBundle
    bundle = DTBundle(model=model, state_mean=np.zeros(4, np.float32),
                      state_std=np.ones(4, np.float32), target_return=10.0, env="hopper", context=5)
    T = 12
    h = History(states=torch.randn(2, T, 4), actions=torch.randn(2, T, 2),
                rewards=torch.randn(2, T, 1), returns_to_go=torch.randn(2, T, 1),
                timesteps=torch.arange(T).repeat(2, 1), t=8)
    rows = torch.tensor([0, 1])
    got = window_action(bundle, h, rows, {})
    with torch.no_grad():
        _, ref, _ = model(states=h.states[:, 4:9], actions=h.actions[:, 4:9],
                          rewards=h.rewards[:, 4:9], returns_to_go=h.returns_to_go[:, 4:9],
                          timesteps=h.timesteps[:, 4:9],
                          attention_mask=torch.ones(2, 5, dtype=torch.long), return_dict=False)
    torch.testing.assert_close(got, ref[:, -1])
    h.t = 1  # short history: left-padded with a zero mask, still one action per row
    assert window_action(bundle, h, rows[:1], {}).shape == (1, 2)
