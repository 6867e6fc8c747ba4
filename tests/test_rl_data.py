"""Behaviour-data pieces: episode recording at the time limit and DT training windows."""
import gymnasium as gym
import numpy as np

from zoo.dt.dt_data import WindowSampler
from zoo.dt.episodes import run_episode
from zoo.dt.linear_policy import LinearPolicy, RunningStat
from zoo.dt.make_data import infer_kind


def test_run_episode_sets_timeout_at_step_limit():
    env = gym.make("Hopper-v5", max_episode_steps=7)
    ep = run_episode(env, lambda o: np.zeros(3), seed=0)
    env.close()
    assert ep["length"] == 7 and len(ep["rewards"]) == 7
    assert ep["timeouts"][-1] and not ep["timeouts"][:-1].any() and not ep["terminals"].any()
    np.testing.assert_allclose(ep["observations"][1:], ep["next_observations"][:-1])
    assert abs(ep["return"] - float(ep["rewards"].sum())) < 1e-3


def test_linear_policy_roundtrip(tmp_path):
    stat = RunningStat(3)
    xs = np.random.default_rng(0).normal(size=(50, 3))
    stat.push_batch(xs[:20])
    stat.push_batch(xs[20:])
    np.testing.assert_allclose(stat.mean, xs.mean(0))
    np.testing.assert_allclose(stat.std, xs.std(0, ddof=1))
    pol = LinearPolicy(np.ones((2, 3)), stat.mean, stat.std)
    pol.save(tmp_path / "p.npz", {"a": 1})
    back = LinearPolicy.load(tmp_path / "p.npz")
    np.testing.assert_allclose(back.act(xs[0]), pol.act(xs[0]))
    assert back.info == {"a": 1}


def test_window_sampler_left_pads_and_scales():
    eps = [{"observations": np.full((n, 2), float(n), np.float32),
            "actions": np.full((n, 1), 0.5, np.float32),
            "rewards": np.ones(n, np.float32)} for n in (3, 30)]
    s = WindowSampler(eps, context=5, scale=10.0, seed=0)
    for _ in range(5):
        b = s.sample(8)
        m = b["attention_mask"].numpy()
        assert m.shape == (8, 5)
        for row in range(8):
            n_pad = int((m[row] == 0).sum())
            assert (m[row, n_pad:] == 1).all()           # left padding only
            assert (b["actions"][row, :n_pad] == -10).all()
            assert (b["actions"][row, n_pad:] == 0.5).all()
            rtg = b["returns_to_go"][row, n_pad:, 0].numpy()
            np.testing.assert_allclose(np.diff(rtg), -0.1, atol=1e-6)  # reward 1 / scale 10


def test_infer_kind():
    from pathlib import Path
    assert infer_kind(Path("hopper-medium-v2.hdf5")) == "medium"
    assert infer_kind(Path("hopper-medium-replay-v2.hdf5")) == "medium-replay"
