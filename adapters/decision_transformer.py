"""Decision Transformer (transformers' `DecisionTransformerModel`, a GPT-2 encoder): memory
policies manage its attention layers exactly as on a language model.

`EpisodeActor` acts with an episode-long KV cache: at step t it feeds only the new tokens
(a_{t-1}, R_t, s_t) and predicts a_t from the state token, so a memory policy decides what the
model remembers of the episode. GPT-2 in a DT uses zero position ids (time comes from the
timestep embedding), so eviction has no positional side effects.
"""
from __future__ import annotations

import torch

FAMILIES = ("decision_transformer",)


def attention_modules(model):
    return [block.attn for block in model.encoder.h]


def num_layers(model) -> int:
    return len(model.encoder.h)


def text_config(model):
    return model.config


def cache_owner(model):
    return model.encoder


class EpisodeActor:
    """`act_fn` for `eval.rl.rollout`: one cache per environment row, kept for the episode.

    Use inside `attach(model, policy)`; pass the session so new caches belong to it.
    """

    __name__ = "episode_cache"

    def __init__(self, session) -> None:
        self.session = session
        self._states: list[dict] = []  # one per batch of episodes

    def episode_fractions(self) -> list[float]:
        """Kept / processed tokens of each episode's cache at its last step."""
        return [f for state in self._states for f in state.get("fraction", {}).values()]

    def episode_fractions_at_update(self) -> list[float]:
        """Kept / processed tokens of each episode's cache right after its last update."""
        return [cache.fraction_at_update() for state in self._states for cache in state["caches"].values()]

    @torch.no_grad()
    def __call__(self, bundle, history, rows, state) -> torch.Tensor:
        model = bundle.model
        if "caches" not in state:
            state["caches"] = {}
            self._states.append(state)
        caches = state["caches"]
        t = history.t
        actions = []
        for i in rows.tolist():
            cache = caches.get(i)
            if cache is None:
                cache = caches[i] = self.session.new_cache()
            tokens = step_tokens(model, history, i, t)
            positions = torch.zeros(1, tokens.shape[1], dtype=torch.long, device=tokens.device)
            hidden = model.encoder(inputs_embeds=tokens, cache=cache, position_ids=positions,
                                   use_cache=True).last_hidden_state
            actions.append(model.predict_action(hidden[:, -1])[0])
            state.setdefault("fraction", {})[i] = cache.fraction()
        return torch.stack(actions)


def step_tokens(model, history, row: int, t: int) -> torch.Tensor:
    """Embedded tokens [1, n, hidden] that step t adds: a_{t-1} (if t > 0), R_t, s_t."""
    device = model.device
    time_now = model.embed_timestep(history.timesteps[row, t].view(1).to(device))
    tokens = []
    if t > 0:
        time_prev = model.embed_timestep(history.timesteps[row, t - 1].view(1).to(device))
        tokens.append(model.embed_action(history.actions[row, t - 1].view(1, -1).to(device)) + time_prev)
    tokens.append(model.embed_return(history.returns_to_go[row, t].view(1, -1).to(device)) + time_now)
    tokens.append(model.embed_state(history.states[row, t].view(1, -1).to(device)) + time_now)
    return model.embed_ln(torch.stack(tokens, dim=1))
