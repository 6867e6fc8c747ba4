"""The project's own greedy decoding path: chunked prefill with explicit positions, then one
token at a time, with a memory policy attached throughout."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from adapters.hf.arguments import check_ids, check_int, check_policy, vocab_size
from adapters.hf.attach import attach
from core.policies import MemoryPolicy


@dataclass
class Generation:
    tokens: list[list[int]]  # new tokens per batch row
    cache_fraction: float  # kept / processed tokens at the end, mean over layers
    kept_tokens: list[int]  # per layer, at the end
    logits: list[torch.Tensor] = field(default_factory=list)  # [B, vocab] per new token, if asked
    mean_decode_fraction: float = 1.0  # cache fraction averaged over decoding steps
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0  # every forward after the prompt
    observe_seconds: float = 0.0  # inside the above: attention probabilities + policy.observe
    update_seconds: float = 0.0  # inside the above: policy.select + eviction
    fraction_at_update: float = 1.0  # kept / processed right after the last update, mean over layers
    processed_tokens: int = 0  # prompt and fed tokens, kept or evicted
    replay_seconds: float = 0.0  # inside prefill: kvzip's context reconstruction and its update


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor | None, policy: MemoryPolicy | None = None, max_new_tokens: int = 32,
                    prefill_chunk: int = 512, eos_token_id: int | list[int] | None = None,
                    return_logits: bool = False, observe_rows: int = 128, cache=None,
                    exact: bool = False, context_end: int | None = None,
                    replay_prompt=None, inputs_embeds: torch.Tensor | None = None) -> Generation:
    """Greedy decoding under `policy`. `cache`: a `MemoryCache` that already holds the prompt's first
    tokens (e.g. from `adapters.hf.prefix.SharedPrefix`); prefill then starts after them. `exact`: as in `attach`
    (the default computes attention once for output and observer, equal to the unmodified model up to rounding).

    `context_end` (query-agnostic protocol, as kvpress evaluates): the prompt's first `context_end` tokens
    are the context, compressed when it ends (whatever the policy's `update_at_prompt_end`); the rest (question, answer prefix) and the generated tokens are then appended uncompressed.
    `context_end` equal to the prompt's length makes the whole prompt the context (one compression at its end).

    `inputs_embeds` [B, n, hidden] (with `input_ids` None): the prompt as the model's input embeddings, e.g. a
    video prompt's merged frame features (`adapters.llava_next_video.prompt_embeddings`); decoding feeds tokens.

    A policy that `replays_context` (kvzip) runs only there: after the context, the reconstruction forwards of
    `replay_prompt` (`adapters.hf.kvzip.replay_prompt(tokenizer)`) and then its update.

    A wrong argument (ids empty, not integers or outside the vocabulary; a count below its minimum; a policy
    that is not a MemoryPolicy) is refused with a UserError naming it."""
    check_arguments(model, input_ids, policy, max_new_tokens, prefill_chunk, observe_rows, context_end, replay_prompt,
                    inputs_embeds)
    if inputs_embeds is not None:
        input_ids = inputs_embeds
    elif input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    eos = set([eos_token_id] if isinstance(eos_token_id, int) else (eos_token_id or []))
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    replay_seconds = 0.0
    with attach(model, policy, observe_rows=observe_rows, exact=exact) as session:
        started = time.perf_counter()
        n_prompt = input_ids.shape[1]
        if context_end is None:
            cache, logits = prefill(model, session, input_ids, prefill_chunk, cache)
        else:
            cache, logits, replay_seconds = prefill_context_first(model, session, input_ids, context_end,
                                                                  prefill_chunk, cache, replay_prompt)
        prefilled = time.perf_counter()
        rows, kept_logits, fractions = decode(model, cache, logits, n_prompt, max_new_tokens, eos, return_logits)
        finished_at = time.perf_counter()
    return Generation(rows, cache.fraction(), cache.kept_tokens(), kept_logits,
                      sum(fractions) / len(fractions) if fractions else cache.fraction(),
                      prefilled - started, finished_at - prefilled, session.observe_seconds,
                      session.update_seconds, cache.fraction_at_update(), cache.processed_tokens(), replay_seconds)


def check_arguments(model, input_ids, policy, max_new_tokens, prefill_chunk, observe_rows, context_end,
                    replay_prompt, inputs_embeds=None) -> None:
    """A UserError naming the first wrong argument of `greedy_generate`."""
    check_policy(policy)
    if inputs_embeds is None:
        check_ids("input_ids", input_ids, vocab_size(model))
    else:
        check_embeddings(model, input_ids, inputs_embeds)
    check_int("max_new_tokens", max_new_tokens, 0)
    check_int("prefill_chunk", prefill_chunk, 1)
    check_int("observe_rows", observe_rows, 1)
    if getattr(policy, "replays_context", False) and (context_end is None or replay_prompt is None):
        raise ValueError(f"{policy.name} compresses a whole context after reconstructing it: it needs context_end "
                         f"(the query-agnostic protocol) and replay_prompt")
    n_prompt = input_ids.shape[-1] if inputs_embeds is None else inputs_embeds.shape[1]
    if context_end is not None and not 0 < context_end <= n_prompt:
        raise ValueError(f"context_end {context_end} must fall inside the prompt of {n_prompt} tokens")


def check_embeddings(model, input_ids, inputs_embeds) -> None:
    hidden = getattr(model.get_input_embeddings(), "embedding_dim", None)
    if input_ids is not None:
        raise ValueError("give the prompt as input_ids or as inputs_embeds, not both")
    if not isinstance(inputs_embeds, torch.Tensor) or not inputs_embeds.is_floating_point() \
            or inputs_embeds.dim() != 3 or inputs_embeds.shape[1] == 0 or inputs_embeds.shape[2] != hidden:
        raise ValueError(f"inputs_embeds must be a float tensor [batch, tokens >= 1, {hidden}], got "
                         f"{getattr(inputs_embeds, 'shape', type(inputs_embeds).__name__)}")


def prefill_context_first(model, session, input_ids, context_end: int, prefill_chunk: int, cache, replay_prompt):
    """The query-agnostic protocol: the context, compressed when it ends (after kvzip's reconstruction for a
    policy that replays it), then the rest of the prompt kept as it comes. (cache, last logits, replay seconds)."""
    replays = getattr(session.policy, "replays_context", False)
    session.prompt.context_ends_with_update(held=replays)
    cache, logits = prefill(model, session, input_ids[:, :context_end], prefill_chunk, cache)
    replay_seconds = 0.0
    if replays:
        from adapters.hf.kvzip import reconstruct

        replay_seconds = reconstruct(model, session, cache, input_ids[:, :context_end], replay_prompt, _forward)
    session.prompt.frozen()
    if context_end < input_ids.shape[1]:
        cache, logits = prefill(model, session, input_ids, prefill_chunk, cache)
    return cache, logits, replay_seconds


def decode(model, cache, logits: torch.Tensor, n_prompt: int, max_new_tokens: int, eos: set[int],
           return_logits: bool = False) -> tuple[list[list[int]], list[torch.Tensor], list[float]]:
    """Greedy tokens from a cache holding `n_prompt` tokens whose last logits are `logits` [B, vocab], inside
    an `attach` block: (new tokens per row, cut after EOS; logits per step if asked; cache fraction per step)."""
    tokens, kept_logits, fractions = [], [], []
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    for step in range(max_new_tokens):
        if return_logits:
            kept_logits.append(logits.float().cpu())
        next_token = logits.argmax(dim=-1)
        tokens.append(next_token)
        finished |= torch.tensor([t in eos for t in next_token.tolist()], device=logits.device)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        logits = _forward(model, next_token.unsqueeze(1), cache, n_prompt + step)
        fractions.append(cache.fraction())
    rows = torch.stack(tokens, dim=1).tolist() if tokens else [[] for _ in range(logits.shape[0])]
    return [_cut_at_eos(r, eos) for r in rows], kept_logits, fractions


def prefill(model, session, input_ids: torch.Tensor, prefill_chunk: int = 512, cache=None):
    """Feed the prompt in chunks of `prefill_chunk` with explicit positions inside an `attach` block;
    returns (cache, logits of the last prompt position). A given `cache` holds the first tokens already."""
    cache = session.new_cache() if cache is None else cache
    first = cache.get_seq_length()
    n_prompt = input_ids.shape[1]
    if first >= n_prompt:
        raise ValueError(f"the given cache already holds {first} tokens; the prompt has only {n_prompt}")
    logits = None
    for start in range(first, n_prompt, prefill_chunk):
        chunk = input_ids[:, start : start + prefill_chunk]
        session.prompt.feeding(last=start + prefill_chunk >= n_prompt)
        logits = _forward(model, chunk, cache, start)
    session.prompt.reset()
    return cache, logits


def _forward(model, chunk, cache, start, all_logits: bool = False):
    """`chunk`: token ids [B, n], or input embeddings [B, n, hidden]."""
    positions = torch.arange(start, start + chunk.shape[1], device=chunk.device).unsqueeze(0)
    given = {"inputs_embeds": chunk} if chunk.is_floating_point() else {"input_ids": chunk}
    out = model(**given, cache=cache, position_ids=positions.expand(chunk.shape[0], -1),
                use_cache=True, logits_to_keep=0 if all_logits else 1)
    return out.logits if all_logits else out.logits[:, -1]


def _cut_at_eos(row, eos):
    for i, t in enumerate(row):
        if t in eos:
            return row[: i + 1]
    return row
