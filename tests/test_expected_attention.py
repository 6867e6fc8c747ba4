"""Expected Attention: the scores equal kvpress's formula written out by hand, the queries the attention
function hands over are the model's queries before RoPE, and the policy keeps ceil(budget * n) tokens."""
import math

import pytest
import torch

from adapters.hf import attach, greedy_generate
from core.memory import LayerMemory
from core.policies import ExpectedAttention
from core.registry import make_policy
from tests.test_adapter_llama import tiny_llama


def rope(positions, dim, theta=10000.0):
    """Standard RoPE tables in the Hugging Face layout: cos, sin [n, dim]."""
    inv_freq = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    freqs = positions.double()[:, None] * inv_freq[None]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().float(), emb.sin().float()


def kvpress_reference(queries, keys, values, n_sink, n_future, start, use_covariance=True, use_vnorm=True,
                      epsilon=0.0):
    """ExpectedAttentionPress.score as kvpress computes it, written out: queries [B, Hq, S, D] before RoPE of
    the span (the first n_sink left out), keys [B, Hkv, P, D] after RoPE, the rotation matrix built from
    cos * I + sin * P over positions start .. start + n_future - 1."""
    q = queries[:, :, n_sink:].double()
    mu = q.mean(dim=2)
    centered = q - mu.unsqueeze(2)
    cov = torch.einsum("bnsi,bnsj->bnij", centered, centered) / q.shape[2]
    d = q.shape[-1]
    cos, sin = rope(torch.arange(start, start + n_future), d)
    eye = torch.eye(d, dtype=torch.float64)
    perm = torch.zeros(d, d, dtype=torch.float64)
    perm[d // 2 :, : d // 2], perm[: d // 2, d // 2 :] = torch.eye(d // 2), -torch.eye(d // 2)
    rot = (cos.double().unsqueeze(1) * eye + sin.double().unsqueeze(1) * perm).mean(dim=0)
    mu = mu @ rot.T
    cov = rot @ cov @ rot.T
    k, v = keys[:, :, n_sink:].double(), values[:, :, n_sink:].double()
    b, hkv, n, _ = k.shape
    group = q.shape[1] // hkv
    kq = k.repeat_interleave(group, dim=1).transpose(2, 3)
    scores = torch.matmul(mu.unsqueeze(2), kq).squeeze(2) / math.sqrt(d)
    if use_covariance:
        scores = scores + torch.einsum("bhin,bhij,bhjn->bhn", kq, cov, kq) / d / 2
    scores = torch.softmax(scores, dim=-1).view(b, hkv, group, n).mean(dim=2)
    if use_vnorm:
        scores = (scores + epsilon) * v.norm(dim=-1)
    return scores


@pytest.mark.parametrize("use_covariance, use_vnorm, epsilon", [(True, True, 0.0), (False, True, 0.01),
                                                                 (True, False, 0.0)])
def test_scores_match_the_hand_written_reference(use_covariance, use_vnorm, epsilon):
    g = torch.Generator().manual_seed(1)
    b, hkv, group, n, d = 2, 2, 3, 40, 16
    keys, values = torch.randn(b, hkv, n, d, generator=g), torch.randn(b, hkv, n, d, generator=g)
    queries = torch.randn(b, hkv * group, n, d, generator=g) + torch.randn(1, hkv * group, 1, d, generator=g)
    mem = LayerMemory()
    mem.append(keys, values)
    mem.advance(n)
    policy = ExpectedAttention(0.5, n_future_positions=64, n_sink=4, use_covariance=use_covariance,
                               use_vnorm=use_vnorm, epsilon=epsilon)
    rotary = lambda positions: rope(positions, d)  # noqa: E731
    for start, end in ((0, 3), (3, 25), (25, n)):  # in segments, the first all sinks: the sums stream
        policy.observe_queries(mem, queries[:, :, start:end], torch.arange(start, end), rotary)
    scores = policy.scores(mem)
    ref = kvpress_reference(queries, keys, values, 4, 64, n, use_covariance, use_vnorm, epsilon)
    torch.testing.assert_close(scores[..., 4:].double(), ref, rtol=1e-5, atol=1e-9)
    assert bool((scores[..., :4] == torch.finfo(torch.float32).max).all())
    # the kept set: the sinks, the newest token and the best of the rest by the reference's scores
    keep = policy.select(mem)
    n_keep = math.ceil(0.5 * n)
    assert keep.shape == (b, hkv, n_keep)
    marked = ref.clone()
    marked[..., -1] = float("inf")
    best = marked.topk(n_keep - 4, dim=-1).indices + 4
    expected = torch.cat([torch.arange(4).expand(b, hkv, 4), best], dim=-1).sort(dim=-1).values
    assert torch.equal(keep, expected)
    assert mem not in policy.stats  # cleared: the next update reads only the queries after this one


def test_statistics_leave_out_the_sink_positions():
    d = 8
    mem = LayerMemory()
    mem.append(torch.randn(1, 1, 10, d), torch.randn(1, 1, 10, d))
    mem.advance(10)
    policy = ExpectedAttention(0.5, n_sink=4)
    queries = torch.zeros(1, 1, 10, d)
    queries[:, :, :4] = 1000.0  # outliers at the sink positions must not enter the mean
    queries[:, :, 4:, 0] = 2.0
    policy.observe_queries(mem, queries, torch.arange(10), None)
    mean, cov = policy.query_statistics(mem)
    expected = torch.zeros(1, 1, d, dtype=torch.float64)
    expected[..., 0] = 2.0
    torch.testing.assert_close(mean, expected)
    torch.testing.assert_close(cov, torch.zeros(1, 1, d, d, dtype=torch.float64))


def test_scoring_without_queries_is_refused():
    mem = LayerMemory()
    mem.append(torch.randn(1, 1, 10, 4), torch.randn(1, 1, 10, 4))
    mem.advance(10)
    with pytest.raises(RuntimeError, match="never handed"):
        ExpectedAttention(0.5).select(mem)


def test_the_attention_function_hands_over_the_queries_before_rope():
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 60), generator=torch.Generator().manual_seed(0))
    attn = model.model.layers[1].self_attn
    captured, handed = {}, []

    def before(module, args, kwargs):
        hidden = kwargs["hidden_states"]
        captured["q"] = module.q_proj(hidden).view(1, hidden.shape[1], -1, module.head_dim).transpose(1, 2)

    policy = ExpectedAttention(0.5, n_up=10**6, update_at_prompt_end=True)
    observe = policy.observe_queries

    def recording(mem, queries, positions, rotary):
        if mem.layer_idx == 1:
            handed.append((queries.clone(), positions.clone()))
        observe(mem, queries, positions, rotary)

    policy.observe_queries = recording
    handle = attn.register_forward_pre_hook(before, with_kwargs=True)
    try:
        with torch.no_grad(), attach(model, policy):
            model(input_ids=ids, use_cache=True)
    finally:
        handle.remove()
    (queries, positions), = handed
    assert torch.equal(positions, torch.arange(60))
    torch.testing.assert_close(queries, captured["q"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("budget, n_up", [(0.3, 10**6), (0.5, 32)])
def test_runs_under_attach_and_keeps_the_budget(budget, n_up, one_thread):
    model = tiny_llama()
    n = 100
    ids = torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(2))
    policy = make_policy("expected_attention", budget, n_up=n_up, update_at_prompt_end=True)
    gen = greedy_generate(model, ids, policy, max_new_tokens=1)
    assert gen.kept_tokens == [math.ceil(budget * n)] * 3
    assert len(policy.stats) == 0
    # decoding appends the new tokens uncompressed until the next update
    more = greedy_generate(model, ids, make_policy("expected_attention", budget, n_up=n_up, update_at_prompt_end=True),
                           max_new_tokens=4)
    assert more.kept_tokens == [math.ceil(budget * n) + 3] * 3


def test_query_agnostic_compresses_the_context_from_its_own_queries(one_thread):
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 90), generator=torch.Generator().manual_seed(5))
    policy = ExpectedAttention(0.4, n_up=10**6)
    seen = []
    observe = policy.observe_queries
    policy.observe_queries = lambda mem, q, positions, rotary: (seen.append(int(positions[-1])),
                                                                 observe(mem, q, positions, rotary))
    gen = greedy_generate(model, ids, policy, max_new_tokens=3, context_end=70)
    assert gen.kept_tokens == [math.ceil(0.4 * 70) + 20 + 2] * 3
    assert max(seen) == 69  # the question and the answer are never observed


def test_gemma3_full_layers_hand_over_their_normed_queries_before_their_own_rope():
    """Gemma 3's full-attention layers use another RoPE base than its sliding ones (the rotary module takes the
    layer type) and norm the queries before RoPE: the handed queries are q_norm(q_proj(h))."""
    from tests.test_adapter_gemma3 import LAYER_TYPES, prompt, tiny_gemma

    model = tiny_gemma()
    layer = LAYER_TYPES.index("full_attention")
    attn = model.model.layers[layer].self_attn
    captured, handed = {}, []

    def before(module, args, kwargs):
        hidden = kwargs["hidden_states"]
        q = module.q_proj(hidden).view(1, hidden.shape[1], -1, module.head_dim)
        captured["q"] = module.q_norm(q).transpose(1, 2)

    policy = ExpectedAttention(0.5, n_up=10**6, update_at_prompt_end=True)
    observe = policy.observe_queries

    def recording(mem, queries, positions, rotary):
        if mem.layer_idx == layer:
            handed.append(queries.clone())
        observe(mem, queries, positions, rotary)

    policy.observe_queries = recording
    handle = attn.register_forward_pre_hook(before, with_kwargs=True)
    try:
        with torch.no_grad(), attach(model, policy):
            model(input_ids=prompt(40, 1), use_cache=True)
    finally:
        handle.remove()
    (queries,) = handed
    torch.testing.assert_close(queries, captured["q"], rtol=1e-5, atol=1e-5)
