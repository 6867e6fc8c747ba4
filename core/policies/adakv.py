import torch

from core.memory import HIDDEN
from core.policies.base import Budget, BudgetPolicy
from core.selection import keep_top, protect_newest


class AdaKV(BudgetPolicy):
    """AdaKV (Feng et al. 2024; kvpress's AdaKVPress): one layer budget spread unevenly over the KV heads.
    `AdaKV(scorer)` wraps any policy with `scores(mem)` -> [B, H, P] (a BudgetPolicy, or a learned scorer) and
    is named `adakv(<scorer's name>)`.

    At each update, with n_keep = the budget's tokens of the processed ones and H KV heads: every head first
    secures its `int(alpha_safeguard * n_keep)` best tokens (at least one if alpha > 0, as kvpress 0.5.5) and
    its newest token (the safeguard; kvpress's default alpha 0.2), then the n_keep * H best (head, token) pairs of the layer are chosen over all heads
    together. A head may so keep more or fewer than n_keep tokens.

    The cache is rectangular (one length per layer: SDPA takes one key length for every head), so the rule
    here is: each head holds as many tokens as the head that selected most (K); a head that selected c < K
    keeps its c tokens visible and its next K - c best tokens hidden (`core.memory.HIDDEN`): they stay in
    the cache and get zero attention, as kvpress's AdaKV masks the keys it prunes. Exactly n_keep * H
    (head, token) pairs stay visible. A hidden token counts as evicted for every later update (it scores
    lowest and is never shown again). `cache.fraction()` counts the K stored tokens per head, the memory
    really held; the visible fraction is the budget.

    Conventions beside kvpress's: the newest token is protected (every BudgetPolicy here keeps it), counts
    are ceil(budget * n) and not int(n * (1 - ratio)); ties are broken by torch.topk, as in kvpress.
    """

    def __init__(self, scorer, budget=None, alpha_safeguard: float = 0.2) -> None:
        if not callable(getattr(scorer, "scores", None)):
            raise ValueError(f"adakv wraps a policy that scores tokens (scores(mem) -> [B, H, P]); "
                             f"{getattr(scorer, 'name', scorer)!r} has none")
        has_budget = getattr(scorer, "budget", None) is not None
        if (budget is None) == (not has_budget):  # one budget: a scorer's rule may read its own (H2O's window)
            raise ValueError(f"adakv({getattr(scorer, 'name', '?')}): give a budget only for a scorer without one")
        if not 0.0 <= alpha_safeguard <= 1.0:
            raise ValueError(f"alpha_safeguard must be in [0, 1], got {alpha_safeguard}")
        super().__init__(0.5, schedule=getattr(scorer, "schedule", None))
        self.budget = scorer.budget if budget is None else Budget(budget)
        self.scorer = scorer
        self.alpha_safeguard = float(alpha_safeguard)
        self.name = f"adakv({scorer.name})"
        self.revision = getattr(scorer, "revision", 1)
        self.observes = scorer.observes
        self.observed_rows = getattr(scorer, "observed_rows", None)
        self.observes_queries = getattr(scorer, "observes_queries", False)
        self.replays_context = getattr(scorer, "replays_context", False)
        for attr in ("chunk_size", "prev_postfix_size", "n_sink"):  # what a context reconstruction reads
            if hasattr(scorer, attr):
                setattr(self, attr, getattr(scorer, attr))

    def observe(self, mem, probs, rows_left):
        self.scorer.observe(mem, probs, rows_left)

    def observe_queries(self, mem, queries, positions, rotary):
        self.scorer.observe_queries(mem, queries, positions, rotary)

    def observe_replay(self, mem, scores, start, end):
        self.scorer.observe_replay(mem, scores, start, end)

    def scores(self, mem):
        return self.scorer.scores(mem)

    def select(self, mem):
        n_keep = self.budget.tokens(mem.processed)
        keep = None
        if n_keep < mem.observed:
            keep = self.choose(mem, n_keep)
        self.after_update(mem)
        return keep

    def choose(self, mem, n_keep: int) -> torch.Tensor:
        """Sets `state[HIDDEN]` over the observed tokens and returns the indices [B, H, K] to keep."""
        scores = protect_newest(self.scores(mem).float())
        lowest = torch.finfo(scores.dtype).min
        hidden_before = mem.state[HIDDEN] if HIDDEN in mem.state else None
        if hidden_before is not None:  # already evicted in all but storage
            scores = scores.masked_fill(hidden_before, lowest)
        b, h, p = scores.shape
        n_safe = int(n_keep * self.alpha_safeguard)
        if self.alpha_safeguard > 0:
            n_safe = max(1, n_safe)  # kvpress 0.5.5: at least one token per head whenever alpha > 0
        if n_safe > 0:
            safe = torch.topk(scores, n_safe, dim=-1).indices
            scores = scores.scatter(-1, safe, torch.finfo(scores.dtype).max)
        chosen = torch.topk(scores.reshape(b, h * p), n_keep * h, dim=-1).indices
        selected = torch.zeros(b, h * p, dtype=torch.bool, device=scores.device)
        selected.scatter_(-1, chosen, True)
        selected = selected.view(b, h, p)
        per_head = int(selected.sum(dim=-1).max())
        # the selected tokens first, then each head's best others to fill the rectangle
        order = torch.where(selected, torch.finfo(scores.dtype).max, scores.clamp(max=torch.finfo(scores.dtype).max / 2))
        keep = keep_top(order, per_head)
        mem.state[HIDDEN] = ~selected
        return keep

    def after_update(self, mem):
        if hasattr(self.scorer, "after_update"):
            self.scorer.after_update(mem)

    def check_capacity(self, max_tokens):
        self.budget.check_capacity(max_tokens)

    def __repr__(self) -> str:
        return f"AdaKV({self.scorer!r}, budget={self.budget}, alpha_safeguard={self.alpha_safeguard})"
