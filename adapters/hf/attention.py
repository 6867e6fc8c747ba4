"""The attention function registered with transformers as "namm".

It computes attention with SDPA and builds its own causal mask from the layer's real key length
(layers differ after eviction). A forward's new queries are processed in segments that end where
the policy is due to update, so a single forward over a long prompt evicts at the same points as
feeding it chunk by chunk. When the policy observes, each segment's attention probabilities are
computed in blocks of at most `observe_rows` queries, averaged over each KV head's query group and
handed to the policy; nothing of size queries x keys outlives its block.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface

NAME = "namm"
SESSION_ATTR = "_namm_session"


def causal_mask(n_queries: int, n_keys: int, device) -> torch.Tensor | None:
    """Bool mask [q, k]: query i sees every key up to index (n_keys - n_queries + i)."""
    if n_queries == 1:
        return None
    offset = n_keys - n_queries
    rows = torch.arange(n_queries, device=device).unsqueeze(1)
    cols = torch.arange(n_keys, device=device).unsqueeze(0)
    return cols <= rows + offset


def sdpa(query, key, value, scaling) -> torch.Tensor:
    """[B, Hq, q, D] causal attention of the last q positions over `key` [B, Hkv, k, D]."""
    q_len, k_len = query.shape[2], key.shape[2]
    if q_len == k_len:
        return F.scaled_dot_product_attention(query, key, value, is_causal=q_len > 1, scale=scaling, enable_gqa=True)
    mask = causal_mask(q_len, k_len, query.device)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling, enable_gqa=True)


def kv_head_probs(query, key, scaling) -> torch.Tensor:
    """Attention probabilities [B, Hkv, q, k] of the last q positions, averaged over GQA groups."""
    b, hq, q_len, d = query.shape
    hkv, k_len = key.shape[1], key.shape[2]
    grouped = query.reshape(b, hkv, hq // hkv, q_len, d)
    logits = torch.matmul(grouped * scaling, key.unsqueeze(2).transpose(-1, -2)).float()
    if q_len > 1:  # only the block of the queries' own keys needs masking
        future = torch.ones(q_len, q_len, dtype=torch.bool, device=query.device).triu(1)
        logits[..., k_len - q_len :].masked_fill_(future, float("-inf"))
    return torch.softmax(logits, dim=-1).mean(dim=2)


def run_update(session, mem) -> bool:
    started = time.perf_counter()
    keep = session.policy.select(mem)
    if keep is not None:
        mem.evict(keep)
    mem.since_update = 0
    session.n_updates += 1
    session.update_seconds += time.perf_counter() - started
    return keep is not None


def memory_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    session = getattr(module, SESSION_ATTR, None)
    scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
    mem = session.memory(module.layer_idx) if session is not None else None
    if mem is None or not session.policy.evicts:
        if mem is not None:
            mem.advance(query.shape[2])
        return sdpa(query, key, value, scaling).transpose(1, 2).contiguous(), None

    policy = session.policy
    q_len = query.shape[2]
    prompt_ends = q_len > 1 and policy.update_at_prompt_end and session.prompt_ends_here()
    outputs, start = [], 0
    # A short forward (a decoding step, a DT step) is computed in one call, as without a policy,
    # so SDPA rounds exactly as it would unmodified; only rows after an eviction are recomputed.
    unsplit = sdpa(query, key, value, scaling) if q_len <= policy.n_up else None
    evicted = False
    while start < q_len:
        end = min(q_len, start + max(1, policy.n_up - mem.since_update))
        n_keys = len(mem) - (q_len - end)  # the tokens after this segment are not visible yet
        keys, values = mem.keys[:, :, :n_keys], mem.values[:, :, :n_keys]
        segment = query[:, :, start:end]
        if unsplit is not None and not evicted:
            outputs.append(unsplit[:, :, start:end])
        else:
            outputs.append(sdpa(segment, keys, values, scaling))
        mem.advance(end - start)
        if policy.observes:
            started = time.perf_counter()
            until_update = policy.n_up - mem.since_update
            if prompt_ends:
                until_update = min(until_update, q_len - end)
            for block in range(0, end - start, session.observe_rows):
                rows = segment[:, :, block : block + session.observe_rows]
                visible = n_keys - (end - start) + block + rows.shape[2]
                probs = kv_head_probs(rows, keys[:, :, :visible], scaling)
                rows_left = (end - start) - block - rows.shape[2] + until_update
                policy.observe(mem, probs, rows_left)
            session.observe_seconds += time.perf_counter() - started
        if mem.since_update >= policy.n_up:
            evicted |= run_update(session, mem)
        start = end
    if prompt_ends and mem.since_update > 0:
        run_update(session, mem)
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return output.transpose(1, 2).contiguous(), None


def no_mask(*args, **kwargs):
    """The attention function builds each layer's mask itself."""
    return None


def register() -> None:
    AttentionInterface.register(NAME, memory_attention)
    AttentionMaskInterface.register(NAME, no_mask)
