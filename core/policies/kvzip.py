import torch

from core.policies.base import BudgetPolicy

STATE = "kvzip_max_attention"


class KVzip(BudgetPolicy):
    """KVzip (Kim et al. 2025; kvpress's KVzipPress): query-agnostic. After a whole context is prefilled, the
    model is fed a reconstruction prompt per chunk of the context ("Repeat the previous context exactly." then
    the chunk; later chunks "Repeat the part of the previous context exactly, starting with" and the previous
    chunk's last 8 tokens; adapters.hf.kvzip drives it) and each context token scores the largest attention
    it receives from those queries: the maximum over the rows and over the query heads of its KV head (the
    authors' and kvpress's pooling). As kvpress computes it, each chunk's attention is a softmax over the
    sinks, the chunk's own context tokens and the reconstruction tokens only (causal among these). The first
    `n_sink` positions score 1, the largest attention there is, and are kept.

    It needs those extra forwards, so it runs only where one update compresses a whole context: the
    query-agnostic protocol (`greedy_generate(..., context_end=...)`) with no update inside the context.
    Anywhere else (an update every n_up tokens inside a prompt, decoding updates, the Decision Transformer's
    steps) `select` raises and says so rather than keeping tokens by some other rule.

    Conventions beside kvpress's: per layer, ceil(budget * n) tokens for every head (kvpress's default picks
    the pruned pairs over all layers and heads together; `adakv(kvzip)` spreads one layer's budget over
    heads); the whole context is reconstructed, a chat template's opening included (kvpress leaves the
    template's prefix out of the repeat, where it scores 0); the newest token is kept.
    """

    name = "kvzip"
    replays_context = True  # the driver feeds the reconstruction prompts before the update

    def __init__(self, budget=0.5, n_sink: int = 4, chunk_size: int = 2048, prev_postfix_size: int = 8,
                 **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.n_sink, self.chunk_size, self.prev_postfix_size = int(n_sink), int(chunk_size), int(prev_postfix_size)

    def observe_replay(self, mem, scores: torch.Tensor, start: int, end: int) -> None:
        """`scores` [B, H, end - start]: the largest attention the context tokens start .. end - 1 (cache slots)
        received from one chunk's reconstruction queries."""
        if STATE not in mem.state:
            mem.state[STATE] = scores.new_zeros(*scores.shape[:2], mem.observed)
        field = mem.state[STATE]
        field[..., start:end] = torch.maximum(field[..., start:end], scores.to(field.dtype))

    def scores(self, mem):
        if STATE not in mem.state:
            raise RuntimeError("kvzip updates only once a whole context has been reconstructed (query-agnostic "
                               "protocol, no update inside the context); this update has no reconstruction scores")
        sinks = mem.observed_positions() < self.n_sink
        return mem.state[STATE].float().masked_fill(sinks, 1.0)

    def after_update(self, mem):
        if STATE in mem.state:
            del mem.state.fields[STATE]  # a later update needs a reconstruction of its own
