"""What a memory keeps, as the paper plots it: the fraction of tokens each layer retains, and the age
of the tokens it retains (how many tokens ago each was written), recorded at every update.

`KeptRecorder` wraps any policy and records what its `select` decides; `record_*` run a few items of
one modality under it (language, Decision Transformer, video) and return a `KeptStats`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from core.policies import MemoryPolicy


@dataclass
class KeptStats:
    n_layers: int
    kept_fraction: dict[int, list[float]] = field(default_factory=dict)  # layer -> kept / processed per update
    ages: list[int] = field(default_factory=list)  # ages of every kept token, all updates and layers
    processed: list[int] = field(default_factory=list)  # tokens processed at each update (for age scale)

    def per_layer(self) -> list[float | None]:
        return [float(np.mean(self.kept_fraction[i])) if self.kept_fraction.get(i) else None
                for i in range(self.n_layers)]

    def to_json(self) -> dict:
        ages = np.asarray(self.ages, dtype=float)
        return {"updates": sum(len(v) for v in self.kept_fraction.values()),
                "kept_fraction_per_layer": self.per_layer(),
                "age_quantiles": {q: float(np.quantile(ages, q / 100)) for q in (10, 25, 50, 75, 90)} if len(ages) else None,
                "mean_processed_at_update": float(np.mean(self.processed)) if self.processed else None}


class KeptRecorder(MemoryPolicy):
    """Acts exactly as `inner` and records, at each of its updates, what each layer keeps."""

    def __init__(self, inner: MemoryPolicy, n_layers: int, max_ages_per_update: int = 4096) -> None:
        super().__init__(inner.n_up, inner.update_at_prompt_end)
        self.inner = inner
        self.name, self.observes, self.evicts = inner.name, inner.observes, inner.evicts
        self.observed_rows = getattr(inner, "observed_rows", None)
        self.stats = KeptStats(n_layers)
        self.max_ages = max_ages_per_update
        self.rng = np.random.default_rng(0)

    def observe(self, mem, probs, rows_left):
        self.inner.observe(mem, probs, rows_left)

    def check_capacity(self, max_tokens):
        self.inner.check_capacity(max_tokens)

    def select(self, mem):
        processed = mem.processed
        newest = processed - 1  # the last observed token (later ones may be appended already)
        positions = mem.observed_positions()
        keep = self.inner.select(mem)
        kept_positions = positions if keep is None else torch.gather(positions, 2, keep)
        if mem.layer_idx is not None:
            self.stats.kept_fraction.setdefault(mem.layer_idx, []).append(kept_positions.shape[2] / max(1, processed))
        ages = (newest - kept_positions).flatten().cpu().numpy()
        if len(ages) > self.max_ages:
            ages = self.rng.choice(ages, self.max_ages, replace=False)
        self.stats.ages.extend(int(a) for a in ages)
        self.stats.processed.append(processed)
        return keep


def n_layers(model) -> int:
    from adapters.hf.attach import _adapter_for

    return _adapter_for(model).num_layers(model)


def record_lm(model, tokenizer, policy, texts: list[str], max_new_tokens: int = 8, exact: bool = False) -> KeptStats:
    from adapters.hf import greedy_generate

    recorder = KeptRecorder(policy, n_layers(model))
    for text in texts:
        ids = tokenizer(text, return_tensors="pt").input_ids
        greedy_generate(model, ids, recorder, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                        exact=exact)
    return recorder.stats


def record_dt(bundle, policy, episodes: int = 2, max_steps: int = 1000, seed: int = 0,
              exact: bool = False) -> KeptStats:
    from adapters.decision_transformer import EpisodeActor
    from adapters.hf import attach
    from eval.rl.rollout import evaluate

    recorder = KeptRecorder(policy, n_layers(bundle.model))
    with attach(bundle.model, recorder, exact=exact) as session:
        evaluate(bundle, act_fn=EpisodeActor(session), episodes=episodes, batch_size=episodes, seed=seed,
                 max_steps=max_steps)
    return recorder.stats


def record_video(chat, policy, prompts_and_frames, max_new_tokens: int = 4, exact: bool = False) -> KeptStats:
    from adapters.hf import attach

    recorder = KeptRecorder(policy, n_layers(chat.model))
    for frames, prompt in prompts_and_frames:
        with attach(chat.model, recorder, exact=exact):
            chat.reply(frames, prompt, max_new_tokens)
    return recorder.stats


def plot_kept(stats: dict[str, KeptStats], path, title: str) -> None:
    """Two rows of panels, one column per modality: kept fraction per layer, and the ages of kept tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from eval.plots import save_figure

    names = list(stats)
    fig, axes = plt.subplots(2, len(names), figsize=(4 * len(names), 6), squeeze=False)
    for col, name in enumerate(names):
        s = stats[name]
        per_layer = s.per_layer()
        top, bottom = axes[0][col], axes[1][col]
        top.bar(range(len(per_layer)), [v if v is not None else 0 for v in per_layer], color="tab:blue")
        top.set_ylim(0, 1.05)
        top.set_xlabel("layer")
        top.set_ylabel("fraction kept at an update")
        top.set_title(name, fontsize=9)
        if s.ages:
            bottom.hist(s.ages, bins=40, color="tab:orange")
        bottom.set_xlabel("age of a kept token (tokens since it was written)")
        bottom.set_ylabel("kept tokens")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
