"""adakv(<scorer>): n_keep x H (head, token) pairs stay visible per layer, every head keeps its safeguard, the
cache stays rectangular with the difference hidden, and a hidden token gets no attention."""
import copy
import math

import pytest
import torch

from adapters.hf import attach
from adapters.hf.attention import NAME, group_probs, memory_attention, register
from adapters.hf.generation import _forward, prefill
from core.memory import HIDDEN, LayerMemory
from core.policies import AdaKV, BudgetPolicy, L2Norm, SnapKV
from core.registry import make_policy
from tests.test_adapter_llama import tiny_llama
from adapters.hf.prompt_state import PromptState


class Fixed(BudgetPolicy):
    """Scores handed in: [B, H, P]."""

    name = "fixed"

    def __init__(self, scores, budget):
        super().__init__(budget)
        self.table = scores

    def scores(self, mem):
        return self.table[..., : mem.observed]


def memory(b, h, p, d=4):
    mem = LayerMemory()
    mem.append(torch.randn(b, h, p, d), torch.randn(b, h, p, d))
    mem.advance(p)
    return mem


def visible_pairs(mem):
    hidden = mem.state[HIDDEN] if HIDDEN in mem.state else torch.zeros(mem.keys.shape[:3], dtype=torch.bool)
    return (~hidden).sum(dim=-1)  # [B, H]


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.2, 0.5, 1.0])
def test_keeps_exactly_n_keep_times_heads_visible_pairs_and_the_safeguard(alpha):
    g = torch.Generator().manual_seed(0)
    b, h, p, budget = 2, 4, 50, 0.3
    # head 0 scores high everywhere, head 3 low: an even split would not be the best pairs
    scores = torch.rand(b, h, p, generator=g) + torch.tensor([3.0, 1.0, 0.5, 0.0]).view(1, h, 1)
    mem = memory(b, h, p)
    policy = AdaKV(Fixed(scores, budget), alpha_safeguard=alpha)
    keep = policy.select(mem)
    mem.evict(keep)
    n_keep = math.ceil(budget * p)
    n_safe = max(1, int(n_keep * alpha)) if alpha > 0 else 0
    pairs = visible_pairs(mem)
    assert pairs.sum(dim=-1).tolist() == [n_keep * h] * b
    assert int(pairs.min()) >= max(n_safe, 1)
    assert mem.keys.shape[2] == int(pairs.max())  # rectangular: the largest head's count
    # which pairs: by brute force, safeguard (and newest) first, then the best n_keep * h over the layer
    for row in range(b):
        marked = scores[row].clone()
        marked[:, -1] = float("inf")
        forced = torch.zeros(h, p, dtype=torch.bool)
        forced[:, -1] = True
        if n_safe:
            forced.scatter_(-1, marked.topk(n_safe, dim=-1).indices, True)
        rank = torch.where(forced, torch.full_like(marked, float("inf")), marked).flatten()
        chosen = torch.zeros(h * p, dtype=torch.bool)
        chosen[rank.topk(n_keep * h).indices] = True
        chosen = chosen.view(h, p)
        positions = mem.positions[row]
        shown = ~mem.state[HIDDEN][row]
        for head in range(h):
            assert sorted(positions[head][shown[head]].tolist()) == torch.nonzero(chosen[head]).flatten().tolist()
    if alpha < 0.5:
        assert int(pairs[:, 0].min()) > n_keep > int(pairs[:, 3].max())  # the budget moved between heads


def test_hidden_tokens_stay_evicted_at_the_next_update():
    b, h = 1, 2
    g = torch.Generator().manual_seed(1)
    table = torch.rand(b, h, 40, generator=g)
    table[:, 0] += 3.0  # head 0 takes most of the first update's budget, head 1 hides tokens
    inner = Fixed(table, 0.5)
    policy = AdaKV(inner, alpha_safeguard=0.1)
    mem = memory(b, h, 20)
    mem.evict(policy.select(mem))
    hidden_positions = set(mem.positions[0, 1][mem.state[HIDDEN][0, 1]].tolist())
    assert hidden_positions, "nothing hidden: the test would prove nothing"
    mem.append(torch.randn(b, h, 20, 4), torch.randn(b, h, 20, 4))
    mem.advance(20)
    # now head 1's old tokens, the hidden ones too, score best of all (scores are read per kept slot)
    slots = mem.positions
    inner.table = torch.where((slots < 20) & (torch.arange(h).view(1, h, 1) == 1), 9.0, 1.0)
    keep = policy.select(mem)
    positions = mem.positions.gather(-1, keep)
    shown = ~mem.state[HIDDEN].gather(-1, keep)
    assert not hidden_positions & set(positions[0, 1][shown[0, 1]].tolist())
    assert int(shown.sum()) == math.ceil(0.5 * 40) * h


def test_make_policy_parses_the_wrapper():
    policy = make_policy("adakv(snapkv)", 0.25, n_up=64, update_at_prompt_end=True)
    assert isinstance(policy, AdaKV) and isinstance(policy.scorer, SnapKV)
    assert policy.name == "adakv(snapkv)" and policy.observes and policy.n_up == 64
    assert policy.revision == SnapKV.revision and policy.budget.value == 0.25
    assert make_policy("adakv(expected_attention)", 0.5).observes_queries
    with pytest.raises(ValueError, match="scores tokens"):
        make_policy("adakv(full)", 0.5)
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("adakv(nope)", 0.5)


def test_attention_over_a_hidden_token_is_zero_on_one_layer():
    """The attention function's output equals attention over the visible keys only, head by head, and the
    observer's probabilities are zero on hidden tokens."""
    model = tiny_llama()
    register()
    attn = model.model.layers[0].self_attn
    g = torch.Generator().manual_seed(3)
    b, hq, hkv, d, p, q = 1, 4, 2, 16, 30, 5
    mem = memory(b, hkv, p, d)
    hidden = torch.rand(b, hkv, p, generator=g) < 0.4
    hidden[..., -1] = False
    mem.state[HIDDEN] = hidden
    new_k, new_v = torch.randn(b, hkv, q, d, generator=g), torch.randn(b, hkv, q, d, generator=g)
    mem.append(new_k, new_v)
    query = torch.randn(b, hq, q, d, generator=g)

    class Session:  # what memory_attention reads
        policy = L2Norm(0.5, n_up=10**6)
        prompt = PromptState(compressed=True)  # the plain path: no update, just attention with the mask
        replay = None
        cache = None

        def memory(self, layer):
            return mem

    attn._namm_session = Session()
    try:
        out, _ = memory_attention(attn, query, mem.keys, mem.values, None, scaling=d ** -0.5)
    finally:
        del attn._namm_session
    out = out.transpose(1, 2)  # [B, Hq, q, D]
    for head in range(hq):
        kv = head // (hq // hkv)
        for row in range(q):
            seen = torch.cat([~hidden[0, kv], torch.arange(q) <= row])  # causal over the new tokens
            keys, values = mem.keys[0, kv][seen], mem.values[0, kv][seen]
            weights = torch.softmax(query[0, head, row] @ keys.T * d ** -0.5, dim=-1)
            torch.testing.assert_close(out[0, head, row], weights @ values, rtol=1e-5, atol=1e-6)
    probs = group_probs(query, mem.keys, d ** -0.5, mem.visible())
    assert bool((probs[..., :p][hidden[:, :, None, None, :].expand_as(probs[..., :p])] == 0).all())
    assert bool((probs[..., :p][~hidden[:, :, None, None, :].expand_as(probs[..., :p])] > 0).all())


def test_hidden_tokens_change_nothing_on_tiny_llama(one_thread):
    """Under adakv(l2) on the tiny Llama, overwriting every hidden token's key and value leaves the next
    logits exactly as they were; overwriting one visible token changes them."""
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 80), generator=torch.Generator().manual_seed(4))
    policy = make_policy("adakv(l2)", 0.3, n_up=10**6, update_at_prompt_end=True)
    with torch.no_grad(), attach(model, policy) as session:
        cache, logits = prefill(model, session, ids)
        mems = [layer.mem for layer in cache.layers]
        assert all(HIDDEN in m.state and bool(m.state[HIDDEN].any()) for m in mems), "nothing hidden: proves nothing"
        for m in mems:
            assert int((~m.state[HIDDEN]).sum()) == math.ceil(0.3 * 80) * m.keys.shape[1]
        token = logits.argmax(-1, keepdim=True)
        twin, other = copy.deepcopy(cache), copy.deepcopy(cache)
        for m in (layer.mem for layer in twin.layers):
            mask = m.state[HIDDEN].unsqueeze(-1)
            m.keys = torch.where(mask, torch.full_like(m.keys, 50.0), m.keys)
            m.values = torch.where(mask, torch.full_like(m.values, -50.0), m.values)
        m = other.layers[0].mem
        shown = torch.nonzero(~m.state[HIDDEN][0, 0]).flatten()
        m.values[0, 0, shown[len(shown) // 2]] += 10.0
        plain = _forward(model, token, cache, ids.shape[1])
        after_hidden = _forward(model, token, twin, ids.shape[1])
        after_visible = _forward(model, token, other, ids.shape[1])
    assert torch.equal(plain, after_hidden)
    assert not torch.allclose(plain, after_visible)


def test_the_clis_take_the_new_names(tmp_path, fake_lm):
    from eval.lm.checks import name_list, policy_names
    from eval.lm.__main__ import main
    from eval.policy_setup import rule_settings
    from core.errors import UserError

    names = name_list("--policies", "full,expected_attention,adakv(snapkv),adakv(expected_attention)", policy_names())
    assert names[2] == "adakv(snapkv)"
    for bad in ("adakv(bogus)", "adakv(namm)", "adakv(../x)"):
        with pytest.raises(UserError, match="unknown name"):
            name_list("--policies", bad, policy_names())
    assert rule_settings("adakv(snapkv)") == rule_settings("snapkv") == {"rule_revision": 2}
    assert main(["--tasks", "passkey", "--policies", "full,expected_attention,adakv(snapkv)", "--n", "1",
                 "--length", "200", "--budget", "0.25", "--out-dir", str(tmp_path / "run")]) == 0
    built = {p.name: p for p in fake_lm.policies}
    assert isinstance(built["adakv(snapkv)"], AdaKV) and built["adakv(snapkv)"].budget.value == 0.25
    assert built["expected_attention"].budget.value == 0.25
    assert (tmp_path / "run" / "preds" / "adakv(snapkv)").is_dir()


def test_one_budget_only():
    with pytest.raises(ValueError, match="only for a scorer without one"):
        AdaKV(L2Norm(0.5), budget=0.3)
