import math
import weakref

import torch

from core.memory import HIDDEN
from core.policies.base import BudgetPolicy


def averaged_rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The [D, D] matrix of `x -> x * mean(cos) + rotate_half(x) * mean(sin)`: RoPE averaged over the positions
    whose `cos`, `sin` [n, D] are given (a column vector x maps to R @ x)."""
    c, s = cos.mean(dim=0), sin.mean(dim=0)
    eye = torch.eye(cos.shape[-1], dtype=cos.dtype, device=cos.device)
    half = cos.shape[-1] // 2
    turned = torch.cat((-eye[:, half:], eye[:, :half]), dim=-1)  # rotate_half of each basis row
    return (eye * c + turned * s).T


class ExpectedAttention(BudgetPolicy):
    """Expected Attention (Devoto et al. 2025; kvpress's ExpectedAttentionPress): each cached token scores the
    attention that future queries are expected to pay it, from the statistics of the recent queries.

    Per query head, the queries before RoPE of the tokens observed since the last update (leaving out the
    first `n_sink` positions of the sequence) give a mean mu and a covariance S (divided by their count, as
    kvpress does). Both are moved to the next `n_future_positions` positions with R, the RoPE rotation
    averaged over them (mu -> R mu, S -> R S R^T). With a key k (after RoPE) of head dimension d, the logit
    k.mu / sqrt(d) + k^T S k / (2 d) (the log of E[exp(q.k / sqrt(d))] for Gaussian queries; the second term
    only with `use_covariance`) goes through a softmax over the cached tokens, is averaged over each KV
    head's query group and, with `use_vnorm`, becomes (p + epsilon) * ||v||. The first `n_sink` positions are
    always kept. kvpress's defaults: n_future_positions 512, n_sink 4, use_covariance and use_vnorm on,
    epsilon 0.

    Queries before RoPE: the attention function hands the policy each segment's queries through the
    inverse rotation (`observes_queries`; adapters.hf.rope says why), so they equal kvpress's
    `q_proj` recomputation to float rounding. Statistics are sums of q and q q^T kept in float64 per layer
    (the queries are never stored), so any update interval works; they cover the span since the previous
    update and are cleared after each. With one update at the end of a prompt or context (kvpress's setting)
    the statistics, the softmax's keys and the future positions are kvpress's.

    Named conventions where it differs from kvpress: sinks are positions < n_sink (kvpress: the first n_sink
    slots of the compressed span, the same tokens at a first compression); a token hidden by a head-adaptive
    wrapper is left out of the softmax, as attention leaves it out; the newest token is kept (every
    BudgetPolicy does); ceil(budget * n) tokens are kept (kvpress: int(n * (1 - ratio))).
    """

    name = "expected_attention"
    observes_queries = True

    def __init__(self, budget=0.5, n_future_positions: int = 512, n_sink: int = 4, use_covariance: bool = True,
                 use_vnorm: bool = True, epsilon: float = 0.0, **kwargs) -> None:
        super().__init__(budget, **kwargs)
        self.n_future_positions, self.n_sink = int(n_future_positions), int(n_sink)
        self.use_covariance, self.use_vnorm, self.epsilon = bool(use_covariance), bool(use_vnorm), float(epsilon)
        self.stats: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LayerMemory -> query sums

    def observe_queries(self, mem, queries, positions, rotary):
        q = queries[:, :, positions >= self.n_sink].double()
        stats = self.stats.get(mem)
        if stats is None:
            b, h, _, d = q.shape
            stats = self.stats[mem] = {"n": 0, "sum": q.new_zeros(b, h, d), "outer": q.new_zeros(b, h, d, d)}
        stats["rotary"] = rotary
        stats["n"] += q.shape[2]
        stats["sum"] += q.sum(dim=2)
        if self.use_covariance:
            stats["outer"] += torch.einsum("bhsi,bhsj->bhij", q, q)

    def query_statistics(self, mem):
        """Mean [B, Hq, D] and covariance [B, Hq, D, D] (or None) of the future queries, in float64."""
        stats = self.stats[mem]
        n = max(stats["n"], 1)
        mean = stats["sum"] / n
        cov = stats["outer"] / n - mean.unsqueeze(-1) * mean.unsqueeze(-2) if self.use_covariance else None
        if stats["rotary"] is not None:
            start = mem.processed  # the next token's position
            future = torch.arange(start, start + self.n_future_positions, device=mean.device)
            rot = averaged_rotation(*stats["rotary"](future)).double()
            mean = mean @ rot.T
            if cov is not None:
                cov = rot @ cov @ rot.T
        return mean, cov

    def scores(self, mem):
        keys = mem.observed_keys().double()
        b, h, p, d = keys.shape
        if mem not in self.stats:
            raise RuntimeError("expected_attention scored a memory whose queries it was never handed: run it "
                               "through adapters.hf.attach (or a wrapper that forwards observe_queries)")
        mean, cov = self.query_statistics(mem)  # all zero if every query was a sink: a uniform softmax
        group = mean.shape[1] // h
        keys_q = keys.repeat_interleave(group, dim=1)  # query head i reads KV head i // group
        logits = torch.einsum("bhpd,bhd->bhp", keys_q, mean) / math.sqrt(d)
        if cov is not None:
            logits = logits + torch.einsum("bhpi,bhij,bhpj->bhp", keys_q, cov, keys_q) / d / 2
        left_out = self._sinks(mem)
        if HIDDEN in mem.state:
            left_out = left_out | mem.state[HIDDEN]
        logits = logits.masked_fill(left_out.repeat_interleave(group, dim=1), float("-inf"))
        probs = torch.softmax(logits, dim=-1).nan_to_num(0.0).view(b, h, group, p).mean(dim=2)
        if self.use_vnorm:
            probs = (probs + self.epsilon) * mem.values[:, :, :p].double().norm(dim=-1)
        scores = probs.float()
        return scores.masked_fill(self._sinks(mem), torch.finfo(scores.dtype).max)

    def _sinks(self, mem):
        return mem.observed_positions() < self.n_sink

    def after_update(self, mem):
        self.stats.pop(mem, None)  # the next update reads the queries after this one
