"""The memory runtime under the HF adapter: eviction decided by the policy in a decoding step, the
prompt-end update whatever the last chunk's size, deep copies of caches, and the pieces the
observer is built from (GQA-averaged probabilities, the streaming spectrogram, token state)."""
import copy
import math

import pytest
import torch

from adapters.hf import MemoryCache, attach, greedy_generate
from adapters.hf.attention import UpdateSchedule, group_mean, kv_head_probs
from core.memory import LayerMemory, TokenState
from core.namm import NAMM, NAMMConfig
from core.policies import H2O
from core.spectrogram import BUFFER, EMA, StreamingSpectrogram
from tests.test_adapter_llama import masked_reference_logits, tiny_llama


def step(model, cache, token, position):
    return model(input_ids=token.view(1, 1), cache=cache, position_ids=torch.tensor([[position]]),
                 use_cache=True).logits[0, -1]


@torch.no_grad()
def test_eviction_in_a_decoding_step_is_exact():
    """The policy updates inside a one-token forward; the next logits equal a full forward in which
    each layer's evicted tokens are masked for every later query."""
    model = tiny_llama(seed=2, layers=3)
    n_up, n_prompt = 48, 40
    torch.manual_seed(7)
    namm = NAMM(NAMMConfig(n_up=n_up), params=torch.randn(4172) * 0.3)
    ids = torch.randint(0, 128, (1, n_prompt))
    with attach(model, namm) as session:
        cache = MemoryCache(3)
        logits = model(input_ids=ids, cache=cache, use_cache=True).logits[0, -1]
        tokens = ids[0].tolist()
        while len(tokens) < n_up:  # decode up to and including the step that triggers the update
            assert session.n_updates == 0
            tokens.append(int(logits.argmax()))
            logits = step(model, cache, torch.tensor(tokens[-1]), len(tokens) - 1)
        assert session.n_updates == 3, "one update per layer, in the one-token forward of token 47"
        kept = cache.kept_tokens()
        assert all(k < n_up for k in kept), f"this NAMM was expected to evict in every layer: {kept}"
        evicted = {}
        for layer, mem in enumerate(cache.memories()):
            mask = torch.ones(2, n_up, dtype=torch.bool)
            mask.scatter_(1, mem.positions[0], False)
            evicted[layer] = mask
        tokens.append(int(logits.argmax()))
        after = step(model, cache, torch.tensor(tokens[-1]), len(tokens) - 1)
    expected = masked_reference_logits(model, torch.tensor([tokens]), evicted, n_up)
    assert (after - expected[-1]).abs().max().item() < 1e-5


@pytest.mark.parametrize("n_prompt, prefill_chunk", [(97, 48), (97, 97), (97, 20), (129, 64), (65, 64)])
def test_prompt_end_update_whatever_the_last_chunk(n_prompt, prefill_chunk):
    """With update_at_prompt_end, the prompt's tail is scored whether the last chunk has one token
    or many: a 97-token prompt in 48-token chunks ends on a one-token forward."""
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, n_prompt), generator=torch.Generator().manual_seed(0))
    out = greedy_generate(model, ids, H2O(0.5, n_up=64, update_at_prompt_end=True), max_new_tokens=1,
                          prefill_chunk=prefill_chunk)
    assert out.kept_tokens == [math.ceil(0.5 * n_prompt)] * 3


def test_prompt_end_under_generate_needs_no_driver():
    """model.generate's prompt is one multi-token forward: it ends the prompt; decoding steps do not."""
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 97), generator=torch.Generator().manual_seed(0))
    with attach(model, H2O(0.5, n_up=64, update_at_prompt_end=True)) as session:
        model.generate(ids, max_new_tokens=3, do_sample=False)
        assert session.cache.kept_tokens() == [49 + 2] * 3


@torch.no_grad()
def test_deepcopy_of_a_cache_is_independent_and_equal():
    model = tiny_llama(seed=3)
    torch.manual_seed(5)
    namm = NAMM(NAMMConfig(n_up=32), params=torch.randn(4172) * 0.3)
    ids = torch.randint(0, 128, (1, 100))
    with attach(model, namm):
        cache = MemoryCache(3)
        model(input_ids=ids, cache=cache, use_cache=True)
        snapshot = copy.deepcopy(cache)
        for a, b in zip(cache.memories(), snapshot.memories()):
            assert (a.n_seen, a.observed, a.since_update, a.n_evicted) == (b.n_seen, b.observed, b.since_update, b.n_evicted)
            assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
            assert torch.equal(a.positions, b.positions)
            assert sorted(a.state.keys()) == sorted(b.state.keys()) == [BUFFER, EMA]
            for name in a.state.keys():
                assert torch.equal(a.state[name], b.state[name])
                assert a.state[name].data_ptr() != b.state[name].data_ptr()
        assert min(cache.kept_tokens()) < 100, "this NAMM was expected to evict"
        token = torch.tensor(7)
        first = step(model, cache, token, 100)
        for position in range(101, 141):  # the original moves on, through an update that evicts
            step(model, cache, token, position)
        assert cache.get_seq_length() == 141 and snapshot.get_seq_length() == 100
        assert torch.equal(step(model, snapshot, token, 100), first)


def test_kv_head_probs_equals_the_per_query_head_average():
    torch.manual_seed(0)
    q, k = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 9, 8)
    probs = kv_head_probs(q, k, 0.3)
    logits = (q * 0.3) @ k.repeat_interleave(3, dim=1).transpose(-1, -2)
    logits[..., 4:] = logits[..., 4:].masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    expected = torch.softmax(logits, -1).view(2, 2, 3, 5, 9).mean(2)
    torch.testing.assert_close(probs, expected, atol=1e-6, rtol=1e-5)
    one = kv_head_probs(q[:, :, -1:], k, 0.3)
    torch.testing.assert_close(one, expected[:, :, -1:], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("group", [1, 2, 3, 4, 7, 8])
def test_group_mean_is_bit_identical_to_mean(group):
    """The observer's GQA average must not move any NAMM decision: torch.equal, not close."""
    torch.manual_seed(group)
    probs = torch.softmax(torch.randn(2, 3, group, 17, 300), dim=-1)
    assert torch.equal(group_mean(probs), probs.mean(dim=2))


def test_streaming_spectrogram_does_not_depend_on_block_sizes():
    """Rows fed one at a time (decoding), in blocks, or at once give the same state; tokens that
    appear later start from zero samples."""
    torch.manual_seed(0)
    rows = torch.rand(1, 2, 150, 30)
    spec = StreamingSpectrogram()
    states = []
    for sizes in ([150], [1] * 150, [7, 64, 1, 1, 77], [40, 33, 77]):
        mem = LayerMemory()
        start = 0
        for size in sizes:
            visible = 30 if start >= 20 else 20  # the last 10 tokens appear after row 20
            if mem.observed < visible:
                mem.append(torch.zeros(1, 2, visible - mem.observed, 4), torch.zeros(1, 2, visible - mem.observed, 4))
                mem.advance(visible - mem.observed)
            block = rows[:, :, start : start + size, :visible]
            if start < 20 < start + size:  # split where the new tokens appear
                spec.init_state(mem.state, 1, 2, mem.observed, "cpu")
                spec.observe(mem.state, block[:, :, : 20 - start])
                mem.append(torch.zeros(1, 2, 10, 4), torch.zeros(1, 2, 10, 4))
                mem.advance(10)
                block = rows[:, :, 20 : start + size]
            spec.init_state(mem.state, 1, 2, mem.observed, "cpu")
            spec.observe(mem.state, block)
            start += size
        states.append((mem.state[EMA].clone(), mem.state[BUFFER].clone()))
    for ema, buffer in states[1:]:
        torch.testing.assert_close(ema, states[0][0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(buffer, states[0][1], atol=0, rtol=0)
    assert states[0][1].shape == (1, 2, 30, 16 + 150 - 16 * 9)


def test_token_state_grows_with_spare_capacity_and_gathers_every_field():
    state = TokenState()
    state["score"] = torch.arange(4.0).view(1, 1, 4)
    state.add("time_major", torch.arange(12.0).view(1, 1, 3, 4), 4, token_axis=3)
    state.resize(5)
    field = state.field("score")
    assert field.capacity > 5
    before = field.data
    state.resize(6)
    assert state.field("score").data is before, "one more token must not copy the field"
    assert state["score"][0, 0].tolist() == [0, 1, 2, 3, 0, 0]
    assert state["time_major"].shape == (1, 1, 6, 3)
    state.gather(torch.tensor([[[1, 3, 4]]]))
    assert state["score"][0, 0].tolist() == [1, 3, 0]
    assert state["time_major"][0, 0, :, 0].tolist() == [1, 3, 0]
    assert state["time_major"][0, 0, 0].tolist() == [1, 5, 9]


def test_update_schedule_segments():
    sched = UpdateSchedule(n_up=64, since_update=40, q_len=100, prompt_ends=True)
    assert [(s.start, s.end, s.updates, s.rows_after) for s in sched.segments()] == [
        (0, 24, True, 0), (24, 88, True, 0), (88, 100, True, 0)]
    sched = UpdateSchedule(n_up=64, since_update=40, q_len=30, prompt_ends=False)
    assert [(s.start, s.end, s.updates, s.rows_after) for s in sched.segments()] == [
        (0, 24, True, 0), (24, 30, False, 58)]
    one = UpdateSchedule(n_up=64, since_update=10, q_len=1, prompt_ends=True).segments()
    assert [(s.start, s.end, s.updates) for s in one] == [(0, 1, True)]
    # kvzip's context end: the driver updates after the forward, so no segment updates but the rows count to it
    held = UpdateSchedule(n_up=1000, since_update=40, q_len=30, prompt_ends=False, held_end=True)
    assert [(s.start, s.end, s.updates, s.rows_after) for s in held.segments()] == [(0, 30, False, 0)]


@pytest.mark.parametrize("params", [None, "random"])
def test_the_default_path_matches_the_exact_path_closely(params):
    """By default each output comes from the observer's probabilities: the same attention as the exact
    path's SDPA up to rounding (and the same evictions), not bit-identical."""
    model = tiny_llama(seed=3)
    ids = torch.randint(0, 128, (1, 200), generator=torch.Generator().manual_seed(1))
    flat = torch.zeros(4172) if params is None else torch.randn(4172, generator=torch.Generator().manual_seed(5)) * 0.05
    make = lambda: NAMM(NAMMConfig(n_up=64), params=flat)  # noqa: E731
    runs = [greedy_generate(model, ids, make(), max_new_tokens=20, prefill_chunk=96, return_logits=True,
                            exact=exact) for exact in (True, False)]
    assert runs[0].tokens == runs[1].tokens
    assert runs[0].kept_tokens == runs[1].kept_tokens
    if params is not None:
        assert max(runs[0].kept_tokens) < 150, "this NAMM was expected to evict"
    assert max((a - b).abs().max().item() for a, b in zip(runs[0].logits, runs[1].logits)) < 1e-5


def count_observed_rows(policy):
    """Wrap `policy.observe` to count the query rows it is handed; returns the running count (a list of one)."""
    observe, rows = policy.observe, [0]

    def counted(mem, probs, rows_left):
        rows[0] += probs.shape[2]
        observe(mem, probs, rows_left)

    policy.observe = counted
    return rows


@pytest.mark.parametrize("name", ["tova", "snapkv", "adakv(snapkv)"])
def test_observing_only_the_rows_a_policy_reads_keeps_the_same_tokens(name, one_thread):
    """TOVA reads the last row before each update, SnapKV its last 32: the default path computes only those
    rows' probabilities, and every update of every layer keeps exactly the indices it keeps with every row
    observed (the exact path). Chunks, 16-row blocks and a window across block edges; updates in decoding."""
    from core.policies import Schedule
    from core.registry import make_policy
    from tests.test_namm_x import assert_same_decisions, decisions

    model = tiny_llama(seed=4)
    ids = torch.randint(0, 128, (1, 300), generator=torch.Generator().manual_seed(6))
    runs, rows = {}, {}
    for exact in (True, False):
        policy = make_policy(name, budget=0.4, schedule=Schedule(72, True))
        rows[exact] = count_observed_rows(policy)
        runs[exact] = decisions(model, ids, policy, new_tokens=60, prefill_chunk=100, observe_rows=16, exact=exact)
    assert_same_decisions(runs[False], runs[True])
    assert rows[False][0] < rows[True][0] / 2, f"the default path observed {rows[False][0]} of {rows[True][0]} rows"
