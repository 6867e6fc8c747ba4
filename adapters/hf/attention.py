"""The attention function registered with transformers as "namm".

It builds its own causal mask from the layer's real key length (layers differ after eviction). An
`UpdateSchedule` splits a forward's new queries into segments that end where the policy is due to
update, so a single forward over a long prompt evicts at the same points as feeding it chunk by chunk.
When the policy observes, the attention probabilities of each segment's queries are computed in blocks
of at most `observe_rows` queries (one Q.K^T per KV head), averaged over each KV head's query group and
handed to the policy; nothing of size queries x keys outlives its block.

Two paths compute the layer's output under a policy that observes attention:

- the default: one computation serves both. A policy that reads every row (the NAMM, H2O) gets the
  output from the same probabilities it observes, and no SDPA call is made; a policy that reads only
  the last rows before an update (`observed_rows`: TOVA, SnapKV) gets its output from SDPA and
  probabilities for those rows only. Equal to the unmodified model up to float rounding.
- `exact`: the output is one SDPA call over the whole forward, as in the unmodified model (only queries
  after an eviction inside the same forward are computed again), and probabilities are computed again
  for every row. A policy that evicts nothing is then bit-identical to the unmodified model.

A layer with a sliding window (transformers passes `sliding_window`, e.g. Gemma 3's local layers) is
never managed by the policy: it attends to the last `sliding_window` tokens, as the unmodified model
does, and its cache is cut to the `sliding_window - 1` tokens the next query can still see.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

from core.memory import HIDDEN

NAME = "namm"
SESSION_ATTR = "_namm_session"


def causal_mask(n_queries: int, n_keys: int, device, window: int | None = None) -> torch.Tensor | None:
    """Bool mask [q, k]: query i sees every key up to index (n_keys - n_queries + i), and with a
    `window` only the last `window` of those (itself included). None for one query without a window."""
    if n_queries == 1 and window is None:
        return None
    rows = torch.arange(n_queries, device=device).unsqueeze(1) + (n_keys - n_queries)
    cols = torch.arange(n_keys, device=device).unsqueeze(0)
    mask = cols <= rows
    return mask if window is None else mask & (cols > rows - window)


def sdpa(query, key, value, scaling, visible: torch.Tensor | None = None) -> torch.Tensor:
    """[B, Hq, q, D] causal attention of the last q positions over `key` [B, Hkv, k, D]. `visible` [B, Hkv, k]
    (bool, from `LayerMemory.visible`): keys where it is False get no attention (hidden tokens)."""
    q_len, k_len = query.shape[2], key.shape[2]
    if visible is None and q_len == k_len:
        return F.scaled_dot_product_attention(query, key, value, is_causal=q_len > 1, scale=scaling, enable_gqa=True)
    mask = causal_mask(q_len, k_len, query.device)
    if visible is not None:
        seen = visible.repeat_interleave(query.shape[1] // key.shape[1], dim=1).unsqueeze(2)  # [B, Hq, 1, k]
        mask = seen if mask is None else seen & mask
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=True)


def group_probs(query, key, scaling, visible: torch.Tensor | None = None) -> torch.Tensor:
    """Attention probabilities [B, Hkv, G, q, k] of the last q positions, per query head of each KV group
    (`visible` as in `sdpa`).

    The query heads of each KV group are stacked along the rows, so K^T is multiplied once per KV
    head (never copied per query head)."""
    b, hq, q_len, d = query.shape
    hkv, k_len = key.shape[1], key.shape[2]
    group = hq // hkv
    stacked = (query * scaling).reshape(b, hkv, group * q_len, d)
    logits = torch.matmul(stacked, key.transpose(-1, -2)).float().view(b, hkv, group, q_len, k_len)
    if q_len > 1:  # only the block of the queries' own keys needs masking
        future = torch.ones(q_len, q_len, dtype=torch.bool, device=query.device).triu(1)
        logits[..., k_len - q_len :].masked_fill_(future, float("-inf"))
    if visible is not None:
        logits.masked_fill_(~visible[:, :, None, None, :], float("-inf"))
    return torch.softmax(logits, dim=-1, out=logits)


def group_mean(probs: torch.Tensor) -> torch.Tensor:
    """[B, Hkv, q, k]: `probs` [B, Hkv, G, q, k] averaged over G, equal to `probs.mean(dim=2)` bit for bit.
    For G <= 4 (SmolLM2, Llama 3 8B, Gemma 3) torch's mean sums sequentially and then divides once, so the
    same sum written out is about 3x faster on CPU, where a reduction over a middle axis is slow; larger
    groups are summed in another order, so they keep torch's mean."""
    if probs.shape[2] == 1:
        return probs[:, :, 0]
    if probs.shape[2] > 4:
        return probs.mean(dim=2)
    total = probs[:, :, 0].clone()
    for g in range(1, probs.shape[2]):
        total += probs[:, :, g]
    return total.div_(probs.shape[2])


def kv_head_probs(query, key, scaling) -> torch.Tensor:
    """Attention probabilities [B, Hkv, q, k] of the last q positions, averaged over GQA groups."""
    return group_mean(group_probs(query, key, scaling))


@dataclass(frozen=True)
class Segment:
    """Queries [start, end) of a forward, computed against the cache as it is after the previous
    segment's update."""

    start: int
    end: int
    updates: bool  # the policy updates (and may evict) once these queries are observed
    rows_after: int  # queries after `end` before the next update (what `observe`'s rows_left counts)

    def keys_visible(self, cached: int, q_len: int) -> int:
        """How many of the `cached` keys (this forward's `q_len` new ones included, last) the segment's queries
        can see: all but the forward's tokens after the segment."""
        return cached - (q_len - self.end)


def keys_seen_by(n_keys: int, n_rows: int, block_end: int) -> int:
    """Keys the queries of a block ending at row `block_end` (of `n_rows` rows whose own keys are the last
    `n_rows` of `n_keys`) can see: up to the block's last query itself."""
    return n_keys - (n_rows - block_end)


@dataclass(frozen=True)
class UpdateSchedule:
    """Where the policy updates inside one forward of `q_len` new tokens: every `n_up` observed
    tokens, counted on from `since_update` (tokens observed since the layer's last update), and,
    when `prompt_ends`, also after the forward's last token."""

    n_up: int
    since_update: int
    q_len: int
    prompt_ends: bool
    # The context ends after this forward and the driver updates once it has reconstructed it (kvzip): no update
    # inside the forward, but its rows count down to that one.
    held_end: bool = False

    @classmethod
    def for_forward(cls, session, mem, q_len: int) -> "UpdateSchedule":
        prompt = session.prompt
        ends = prompt.update_at_end(session.policy) and prompt.ends_prompt(q_len)
        return cls(session.policy.n_up, mem.since_update, q_len, ends, prompt.held_update_after(q_len))

    def segments(self) -> list[Segment]:
        out, start, since = [], 0, self.since_update
        while start < self.q_len:
            end = min(self.q_len, start + max(1, self.n_up - since))
            since += end - start
            due = since >= self.n_up
            ends_prompt = self.prompt_ends and end == self.q_len
            rows_after = 0 if due or ends_prompt or (self.held_end and end == self.q_len) else self.n_up - since
            if self.prompt_ends or self.held_end:
                rows_after = min(rows_after, self.q_len - end)
            out.append(Segment(start, end, due or ends_prompt, rows_after))
            since = 0 if due or ends_prompt else since
            start = end
        return out


@torch.no_grad()
def run_update(session, mem) -> None:
    started = time.perf_counter()
    keep = session.policy.select(mem)
    if keep is not None:
        mem.evict(keep)
    mem.since_update = 0
    session.n_updates += 1
    session.update_seconds += time.perf_counter() - started


def memory_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{type(module).__name__}: attention logit soft-capping is not supported under a memory policy")
    session = getattr(module, SESSION_ATTR, None)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    mem = session.memory(module.layer_idx) if session is not None else None
    window = kwargs.get("sliding_window")
    if window is not None:
        if mem is not None:
            raise ValueError(f"layer {module.layer_idx} has a sliding window of {window} tokens; the adapter must "
                             f"leave it to its window, not hand it to the policy")
        return windowed_attention(module, session, query, key, value, scaling, window)
    if mem is not None and session.replay is not None:
        return replay_attention(session, mem, query, key, value, scaling), None
    if mem is None or not session.policy.evicts or not session.prompt.observing():
        visible = None
        if mem is not None:
            visible = mem.visible()
            mem.advance(query.shape[2])
        return sdpa(query, key, value, scaling, visible).transpose(1, 2).contiguous(), None

    policy = session.policy
    q_len = query.shape[2]
    shared = shares_output(session, policy)
    if shared:  # the output comes from the probabilities the observer computes anyway
        output = query.new_empty(*query.shape[:3], value.shape[-1])
    else:
        # The whole forward is first computed in one SDPA call, exactly as the unmodified model
        # does (so a policy that evicts nothing is bit-identical); only the queries after an
        # eviction inside this forward are computed again, against the reduced cache.
        output = sdpa(query, key, value, scaling, mem.visible())
    rows_read = None if session.exact else policy.observed_rows
    updated = False
    for seg in UpdateSchedule.for_forward(session, mem, q_len).segments():
        n_keys = seg.keys_visible(len(mem), q_len)
        keys, values = mem.keys[:, :, :n_keys], mem.values[:, :, :n_keys]
        segment = query[:, :, seg.start : seg.end]
        # evicted earlier in this forward, or tokens hidden there (which may evict nothing)
        if not shared and (mem.keys is not key or (updated and HIDDEN in mem.state)):
            output[:, :, seg.start : seg.end] = sdpa(segment, keys, values, scaling, mem.visible(n_keys))
        mem.advance(seg.end - seg.start)
        if policy.observes_queries:
            observe_queries(session, mem, segment, n_keys, module.layer_idx)
        if policy.observes:
            observe(session, mem, segment, keys, scaling, seg,
                    (values, output[:, :, seg.start : seg.end]) if shared else None, rows_read)
        if seg.updates:
            run_update(session, mem)
            updated = True
    return output.transpose(1, 2).contiguous(), None


def shares_output(session, policy) -> bool:
    """Whether the layer's output comes from the observer's probabilities: on the default path, for a policy
    that reads the attention of every query row."""
    return not session.exact and policy.observes and policy.observed_rows is None


def first_row_read(n_rows: int, rows_after: int, rows_read: int | None) -> int:
    """The first of a segment's `n_rows` rows the policy reads when it reads only rows followed by fewer than
    `rows_read` queries before the next update (`rows_after` of them come after the segment); 0 for all."""
    if rows_read is None:
        return 0
    return max(0, n_rows + rows_after - rows_read)


def windowed_attention(module, session, query, key, value, scaling, window: int):
    """A sliding-window layer, computed as the unmodified model computes it: transformers' SDPA
    function, with a window mask wherever transformers' mask builder makes one (the keys are those of
    the last consecutive positions). The cache then keeps only the `window - 1` tokens a later query
    can see, as the unmodified model's sliding cache does."""
    q_len, k_len = query.shape[2], key.shape[2]
    needs_mask = k_len >= window or (q_len > 1 and q_len != k_len)
    mask = causal_mask(q_len, k_len, query.device, window)[None, None] if needs_mask else None
    output, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=scaling)
    if session is not None and session.cache is not None:
        session.cache.layers[module.layer_idx].keep_recent(window - 1)
    return output, None


def observe(session, mem, segment, keys, scaling, seg: Segment, shared=None, rows_read: int | None = None) -> None:
    """Hand the policy the GQA-averaged probabilities of the segment's queries, in blocks of at
    most `session.observe_rows` rows (statistics for the policy: never part of an autograd graph).
    With `shared` = (values, out), also write the attention output of those rows into `out`.
    With `rows_read` (the policy's `observed_rows`), only the rows the policy reads are computed; the
    blocks keep their boundaries, so each block's sums add the same rows in the same order."""
    started = time.perf_counter()
    n_rows, n_keys = segment.shape[2], keys.shape[2]
    seen = mem.visible(n_keys)
    first = first_row_read(n_rows, seg.rows_after, rows_read)
    for block in range(0, n_rows, session.observe_rows):
        block_end = min(n_rows, block + session.observe_rows)
        if block_end <= first:
            continue
        start = max(block, first)
        rows = segment[:, :, start:block_end]
        visible = keys_seen_by(n_keys, n_rows, block_end)
        with torch.no_grad():
            probs = group_probs(rows, keys[:, :, :visible], scaling, None if seen is None else seen[..., :visible])
        if shared is not None:
            values, out = shared
            b, hkv, group, r, _ = probs.shape
            attended = torch.matmul(probs.view(b, hkv, group * r, visible).to(values.dtype), values[:, :, :visible])
            out[:, :, start:block_end] = attended.view(b, hkv * group, r, -1)
        with torch.no_grad():
            averaged = group_mean(probs)
            rows_left = (n_rows - block_end) + seg.rows_after  # queries still to come before the next update
            session.policy.observe(mem, averaged, rows_left)
    session.observe_seconds += time.perf_counter() - started


def replay_attention(session, mem, query, key, value, scaling) -> torch.Tensor:
    """A KVzip reconstruction forward (adapters.hf.kvzip): the layer's output is plain attention over the whole
    cache; the policy gets, per KV head, the largest attention each context token of the chunk receives from
    these queries (max over rows and over the query heads of the group), with the softmax taken, as kvpress's
    KVzipPress takes it, over the sinks, the chunk's context tokens and the reconstruction tokens only."""
    chunk = session.replay
    output = sdpa(query, key, value, scaling, mem.visible())
    q_len = query.shape[2]
    sink, width = min(chunk.n_sink, chunk.start), chunk.end - chunk.start
    keys = torch.cat([key[:, :, :sink], key[:, :, chunk.start : chunk.end], key[:, :, -q_len:]], dim=2)
    best = None
    started = time.perf_counter()
    with torch.no_grad():
        for block in range(0, q_len, session.observe_rows):
            rows = query[:, :, block : block + session.observe_rows]
            probs = group_probs(rows, keys[:, :, : sink + width + block + rows.shape[2]], scaling)
            top = probs[..., sink : sink + width].amax(dim=(2, 3))
            best = top if best is None else torch.maximum(best, top)
        session.policy.observe_replay(mem, best, chunk.start, chunk.end)
    session.observe_seconds += time.perf_counter() - started
    return output.transpose(1, 2).contiguous()


def observe_queries(session, mem, segment, n_keys: int, layer_idx: int) -> None:
    """Hand the policy the segment's queries before RoPE (inverse rotation, adapters.hf.rope), every query
    head, with their positions and the layer's rotary embedding."""
    from adapters.hf.rope import unrotate

    started = time.perf_counter()
    positions = mem.positions[0, 0, n_keys - segment.shape[2] : n_keys]
    rotary = session.rotaries.get(layer_idx)
    with torch.no_grad():
        session.policy.observe_queries(mem, unrotate(segment, positions, rotary), positions, rotary)
    session.observe_seconds += time.perf_counter() - started


def no_mask(*args, **kwargs):
    """The attention function builds each layer's mask itself."""
    return None


def register() -> None:
    AttentionInterface.register(NAME, memory_attention)
    AttentionMaskInterface.register(NAME, no_mask)
