"""Roll out a Decision Transformer in gymnasium MuJoCo environments.

Reference protocol "window" (the HF Decision Transformer example): at every environment step
the model is re-run on the last K steps of (return-to-go, state, action) with no KV cache;
the history is left-padded with zeros to K and the current action slot is a zero
placeholder. A batch of environments advances in lockstep; the model sees the live ones in
one batched call. The per-step model call is `window_action`; another protocol (e.g. an
episode-long KV cache with a memory policy) plugs in as a different `act_fn` with the same
signature.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .dt_model import DTBundle
from .envs import MAX_EPISODE_STEPS, make_env
from .scores import normalized_score


@dataclass
class History:
    """Per-env episode history, preallocated to the episode limit. Row t of `actions` and
    `rewards` is a zero placeholder until step t has been taken."""
    states: torch.Tensor      # [B, T+1, S] normalised
    actions: torch.Tensor     # [B, T+1, A]
    rewards: torch.Tensor     # [B, T+1, 1]
    returns_to_go: torch.Tensor  # [B, T+1, 1] scaled
    timesteps: torch.Tensor   # [B, T+1]
    t: int = 0                # index of the current step (its state is known)

    def window(self, rows: torch.Tensor, K: int):
        """The last K steps (up to and including step t) of the given env rows."""
        lo = max(0, self.t + 1 - K)
        hi = self.t + 1
        return (self.states[rows, lo:hi], self.actions[rows, lo:hi], self.rewards[rows, lo:hi],
                self.returns_to_go[rows, lo:hi], self.timesteps[rows, lo:hi])


def _left_pad(x: torch.Tensor, K: int) -> torch.Tensor:
    pad = K - x.shape[1]
    if pad <= 0:
        return x
    return torch.cat([x.new_zeros((x.shape[0], pad) + x.shape[2:]), x], dim=1)


@torch.no_grad()
def window_action(bundle: DTBundle, history: History, rows: torch.Tensor, state: dict) -> torch.Tensor:
    """One model call of the window protocol: actions [len(rows), A] for step history.t."""
    K = bundle.context
    s, a, r, g, t = history.window(rows, K)
    n = s.shape[1]
    mask = torch.zeros((len(rows), K), dtype=torch.long)
    mask[:, K - n:] = 1
    dev = bundle.model.device
    _, action_preds, _ = bundle.model(
        states=_left_pad(s, K).to(dev), actions=_left_pad(a, K).to(dev),
        rewards=_left_pad(r, K).to(dev), returns_to_go=_left_pad(g, K).to(dev),
        timesteps=_left_pad(t, K).to(dev), attention_mask=mask.to(dev), return_dict=False)
    return action_preds[:, -1]


@dataclass
class RolloutResult:
    env: str
    returns: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    seeds: list
    env_steps: int
    seconds: float
    extra: dict = field(default_factory=dict)

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / max(self.seconds, 1e-9)

    def summary(self) -> dict:
        return {"env": self.env, "episodes": len(self.returns),
                "return_mean": float(self.returns.mean()), "return_std": float(self.returns.std()),
                "score_mean": float(self.scores.mean()), "score_std": float(self.scores.std()),
                "length_mean": float(self.lengths.mean()), "env_steps": self.env_steps,
                "seconds": round(self.seconds, 2),
                "steps_per_second": round(self.steps_per_second, 1), **self.extra}


def concatenate(results: list[RolloutResult]) -> RolloutResult:
    """Runs of consecutive seeds (e.g. one episode each) as one result."""
    first = results[0]
    return RolloutResult(env=first.env, returns=np.concatenate([r.returns for r in results]),
                         lengths=np.concatenate([r.lengths for r in results]),
                         scores=np.concatenate([r.scores for r in results]),
                         seeds=[s for r in results for s in r.seeds], env_steps=sum(r.env_steps for r in results),
                         seconds=sum(r.seconds for r in results), extra=first.extra)


def run_batch(bundle: DTBundle, env_name: str, seeds: list[int], act_fn=window_action,
              target_return: float | None = None, max_steps: int = MAX_EPISODE_STEPS):
    """One episode in each of len(seeds) environments, stepped in lockstep.
    Returns (returns, lengths, env_steps)."""
    B = len(seeds)
    envs = [make_env(env_name) for _ in seeds]
    S, A = bundle.state_dim, bundle.act_dim
    mean = torch.as_tensor(bundle.state_mean)
    std = torch.as_tensor(bundle.state_std)
    target = target_return if target_return is not None else bundle.target_return
    if target is None:
        raise ValueError("no target return: pass target_return or load the DT with env=")
    T = max_steps + 1
    h = History(states=torch.zeros(B, T, S), actions=torch.zeros(B, T, A),
                rewards=torch.zeros(B, T, 1), returns_to_go=torch.zeros(B, T, 1),
                timesteps=torch.zeros(B, T, dtype=torch.long))
    obs = np.stack([e.reset(seed=s)[0] for e, s in zip(envs, seeds)])
    h.states[:, 0] = (torch.as_tensor(obs, dtype=torch.float32) - mean) / std
    h.returns_to_go[:, 0] = target / bundle.scale
    live = np.ones(B, dtype=bool)
    returns = np.zeros(B)
    lengths = np.zeros(B, dtype=np.int64)
    state: dict = {}  # scratch space for act_fn (e.g. a KV cache); unused by the window protocol
    steps = 0
    for t in range(max_steps):
        h.t = t
        rows = torch.as_tensor(np.flatnonzero(live))
        actions = act_fn(bundle, h, rows, state).to("cpu", torch.float32)
        h.actions[rows, t] = actions
        for j, i in enumerate(rows.tolist()):
            ob, rew, term, trunc, _ = envs[i].step(actions[j].numpy())
            steps += 1
            returns[i] += rew
            lengths[i] += 1
            h.rewards[i, t, 0] = float(rew)
            h.states[i, t + 1] = (torch.as_tensor(ob, dtype=torch.float32) - mean) / std
            h.returns_to_go[i, t + 1] = h.returns_to_go[i, t] - float(rew) / bundle.scale
            h.timesteps[i, t + 1] = min(t + 1, bundle.max_ep_len - 1)
            if term or trunc:
                live[i] = False
        if not live.any():
            break
    for e in envs:
        e.close()
    return returns, lengths, steps


def evaluate(bundle: DTBundle, env_name: str | None = None, episodes: int = 10,
             batch_size: int = 10, seed: int = 0, act_fn=window_action,
             target_return: float | None = None, max_steps: int = MAX_EPISODE_STEPS) -> RolloutResult:
    """`episodes` episodes with seeds seed, seed+1, ... in batches of `batch_size` envs."""
    env_name = env_name or bundle.env
    if env_name is None:
        raise ValueError("no environment: pass env_name or load the DT with env=")
    seeds = list(range(seed, seed + episodes))
    rets, lens, steps = [], [], 0
    t0 = time.time()
    for i in range(0, episodes, batch_size):
        r, l, n = run_batch(bundle, env_name, seeds[i:i + batch_size], act_fn, target_return,
                            max_steps)
        rets.append(r)
        lens.append(l)
        steps += n
    rets, lens = np.concatenate(rets), np.concatenate(lens)
    return RolloutResult(env=env_name, returns=rets, lengths=lens,
                         scores=np.asarray(normalized_score(env_name, rets)), seeds=seeds,
                         env_steps=steps, seconds=time.time() - t0,
                         extra={"protocol": getattr(act_fn, "__name__", "custom"),
                                "target_return": target_return or bundle.target_return,
                                "context": bundle.context})
