"""Training windows for the Decision Transformer, following the HF DT example's collator:
trajectories drawn with probability proportional to their length, a random start, up to K
steps, left padding (states 0, actions -10, rewards 0, returns-to-go 0, timesteps 0, mask 0),
states normalised with the dataset mean/std, returns-to-go divided by `scale`."""
from __future__ import annotations

import numpy as np
import torch


class WindowSampler:
    def __init__(self, episodes: list[dict], context: int = 20, scale: float = 1000.0,
                 max_ep_len: int = 1000, seed: int = 0):
        if not episodes:
            raise ValueError("no episodes to train on")
        self.episodes = episodes
        self.K, self.scale, self.max_ep_len = context, scale, max_ep_len
        states = np.concatenate([ep["observations"] for ep in episodes])
        self.state_mean = states.mean(0).astype(np.float32)
        self.state_std = (states.std(0) + 1e-6).astype(np.float32)
        self.rtg = [np.cumsum(ep["rewards"][::-1])[::-1].astype(np.float32) for ep in episodes]
        lengths = np.array([len(ep["rewards"]) for ep in episodes], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.state_dim = states.shape[1]
        self.act_dim = episodes[0]["actions"].shape[1]
        self.rng = np.random.default_rng(seed)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        K, S, A = self.K, self.state_dim, self.act_dim
        s = np.zeros((batch_size, K, S), np.float32)
        a = np.full((batch_size, K, A), -10.0, np.float32)
        r = np.zeros((batch_size, K, 1), np.float32)
        g = np.zeros((batch_size, K, 1), np.float32)
        t = np.zeros((batch_size, K), np.int64)
        m = np.zeros((batch_size, K), np.float32)
        for b, i in enumerate(self.rng.choice(len(self.episodes), size=batch_size, p=self.p)):
            ep = self.episodes[i]
            n = len(ep["rewards"])
            si = int(self.rng.integers(0, n))
            L = min(K, n - si)
            s[b, K - L:] = (ep["observations"][si:si + L] - self.state_mean) / self.state_std
            a[b, K - L:] = ep["actions"][si:si + L]
            r[b, K - L:, 0] = ep["rewards"][si:si + L]
            g[b, K - L:, 0] = self.rtg[i][si:si + L] / self.scale
            t[b, K - L:] = np.minimum(np.arange(si, si + L), self.max_ep_len - 1)
            m[b, K - L:] = 1.0
        return {"states": torch.from_numpy(s), "actions": torch.from_numpy(a),
                "rewards": torch.from_numpy(r), "returns_to_go": torch.from_numpy(g),
                "timesteps": torch.from_numpy(t), "attention_mask": torch.from_numpy(m)}
