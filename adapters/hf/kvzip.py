"""KVzip's context reconstruction (core.policies.kvzip): after a whole context is in the cache, feed the model,
chunk by chunk, a prompt asking it to repeat the context followed by the chunk itself, and let the policy
record the largest attention each context token receives from those queries. The reconstruction tokens
are dropped from the cache after each chunk; the policy's update then compresses the context.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

FIRST = "\n\nRepeat the previous context exactly."
LATER = "\n\nRepeat the part of the previous context exactly, starting with"
MARK = "KVZIPCONTEXTMARK"


@dataclass
class ReplayPrompt:
    """Token ids [1, n]: the instruction of the first chunk, of the later ones (the previous chunk's last tokens
    follow it), and the suffix that closes the user turn (the chat template's, else a newline)."""

    first: torch.Tensor
    later: torch.Tensor
    suffix: torch.Tensor


def _ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text, add_special_tokens=False).input_ids], dtype=torch.long)


def replay_prompt(tokenizer) -> ReplayPrompt:
    suffix = "\n"
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template([{"role": "user", "content": MARK}], add_generation_prompt=True,
                                             tokenize=False)
        if MARK in text:
            suffix = text.split(MARK, 1)[1]
    return ReplayPrompt(_ids(tokenizer, FIRST), _ids(tokenizer, LATER), _ids(tokenizer, suffix))


@dataclass(frozen=True)
class ReplayChunk:
    """What the attention function scores during one reconstruction forward: context slots [start, end)."""

    start: int
    end: int
    n_sink: int


def chunks(n_context: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk_size, n_context)) for s in range(0, n_context, chunk_size)]


def chunk_inputs(context: torch.Tensor, prompt: ReplayPrompt, chunk_size: int, prev_postfix_size: int, embed=None):
    """(start, end, input) of each reconstruction forward. `context`: token ids [1, n], or input embeddings
    [1, n, hidden] (a video prompt's) with `embed` turning the instruction's ids into embeddings."""
    if embed is None:
        as_input = lambda ids: ids.to(context.device)  # noqa: E731
    else:
        as_input = lambda ids: embed(ids.to(context.device)).to(context.dtype)  # noqa: E731
    out, spans = [], chunks(context.shape[1], chunk_size)
    for i, (start, end) in enumerate(spans):
        if i == 0:
            instruction = as_input(prompt.first)
        else:
            previous = context[:, max(spans[i - 1][0], start - prev_postfix_size) : start]
            instruction = torch.cat([as_input(prompt.later), previous], dim=1)
        out.append((start, end, torch.cat([instruction, as_input(prompt.suffix), context[:, start:end]], dim=1)))
    return out


@torch.no_grad()
def reconstruct(model, session, cache, context: torch.Tensor, prompt: ReplayPrompt, forward) -> float:
    """Run the reconstruction forwards over the context held by `cache` (inside `attach`), then the policy's
    update on every managed layer. `context`: its token ids, or its input embeddings (a video prompt: the
    frames' features are repeated as they were fed). `forward(model, ids, cache, start)`: the driver's forward at explicit
    positions (adapters.hf.generation's). Returns the seconds taken (the extra cost of the policy)."""
    from adapters.hf.attention import run_update

    policy = session.policy
    if len(session.managed) != session.num_layers:
        raise ValueError("kvzip: models with sliding-window layers are not supported (the reconstruction would "
                         "push the context out of their windows)")
    n = cache.processed_tokens()
    if context.shape[1] != n or any(len(m) != n for m in cache.memories()):
        raise ValueError(f"kvzip reconstructs a whole, uncompressed context: the cache holds "
                         f"{[len(m) for m in cache.memories()]} of {n} tokens, the context has {context.shape[1]}")
    embed = model.get_input_embeddings() if context.is_floating_point() else None
    started = time.perf_counter()
    for start, end, ids in chunk_inputs(context, prompt, policy.chunk_size, policy.prev_postfix_size, embed):
        session.replay = ReplayChunk(start, end, policy.n_sink)
        try:
            forward(model, ids, cache, n)
        finally:
            session.replay = None
            for m in cache.memories():  # the reconstruction tokens leave the cache
                m.keys, m.values, m.positions = m.keys[:, :, :n], m.values[:, :, :n], m.positions[:, :, :n]
                m.n_seen = n
    for layer in sorted(session.managed):
        run_update(session, cache.layers[layer].mem)
    return time.perf_counter() - started
