"""Each baseline keeps what its rule says, on small hand-made memories."""
import pytest
import torch

from core.memory import LayerMemory
from core.policies import H2O, TOVA, TOVAPerHead, Budget, L2Norm, RandomEviction, Recency, SnapKV
from core.registry import make_policy


def memory(n_tokens=10, heads=1, keys=None):
    mem = LayerMemory()
    k = keys if keys is not None else torch.zeros(1, heads, n_tokens, 2)
    mem.append(k, torch.zeros_like(k))
    mem.advance(n_tokens)
    return mem


def kept(policy, mem):
    keep = policy.select(mem)
    return keep[0].tolist() if keep is not None else None


def test_recency_keeps_sinks_and_recent_window():
    mem = memory(10)
    assert kept(Recency(budget=5, n_sink=2), mem) == [[0, 1, 7, 8, 9]]


def test_l2_keeps_smallest_key_norms_and_the_newest_token():
    norms = torch.tensor([5.0, 1.0, 4.0, 0.5, 3.0, 9.0])
    keys = torch.zeros(1, 1, 6, 2)
    keys[..., 0] = norms
    mem = memory(keys=keys)
    assert kept(L2Norm(budget=3), mem) == [[1, 3, 5]]


def test_h2o_keeps_heavy_hitters_plus_recent_window():
    mem = memory(8)
    probs = torch.zeros(1, 1, 2, 8)
    probs[0, 0, 0, 2] = 0.9  # heavy hitter
    probs[0, 0, 1, 4] = 0.6
    probs[0, 0, :, 0] = 0.05
    H2O(budget=4).observe(mem, probs, rows_left=0)
    # budget 4: 2 recent (6, 7) + the 2 heaviest of the rest (2, 4)
    assert kept(H2O(budget=4), mem) == [[2, 4, 6, 7]]


def test_h2o_accumulates_across_observations():
    mem = memory(6)
    policy = H2O(budget=3, recent_ratio=0.0)
    for col in (1, 1, 3):
        probs = torch.zeros(1, 1, 1, 6)
        probs[..., col] = 1.0
        policy.observe(mem, probs, rows_left=0)
    assert kept(policy, mem) == [[1, 3, 5]]


def test_tova_uses_only_the_last_query():
    mem = memory(6)
    probs = torch.zeros(1, 1, 2, 6)
    probs[0, 0, 0, 1] = 1.0  # an earlier query: ignored
    probs[0, 0, 1, 2] = 0.7
    probs[0, 0, 1, 4] = 0.3
    policy = TOVA(budget=3)
    policy.observe(mem, probs, rows_left=0)
    assert kept(policy, mem) == [[2, 4, 5]]


def test_tova_averages_heads_so_every_head_keeps_the_same_tokens():
    mem = memory(6, heads=2)
    probs = torch.zeros(1, 2, 1, 6)
    probs[0, 0, 0, 1], probs[0, 0, 0, 3] = 0.6, 0.4  # head 0 prefers token 1
    probs[0, 1, 0, 2], probs[0, 1, 0, 3] = 0.6, 0.4  # head 1 prefers token 2; over both heads token 3 wins
    authors = TOVA(budget=2)
    authors.observe(mem, probs, rows_left=0)
    assert kept(authors, mem) == [[3, 5], [3, 5]]
    per_head = TOVAPerHead(budget=2)
    per_head.observe(mem, probs, rows_left=0)
    assert kept(per_head, mem) == [[1, 5], [2, 5]]


def test_snapkv_counts_only_the_observation_window_and_keeps_it():
    mem = memory(12)
    policy = SnapKV(budget=4, window=2, kernel=1)
    early = torch.zeros(1, 1, 3, 12)
    early[..., 3] = 1.0  # queries far from the update: outside the window
    policy.observe(mem, early, rows_left=2)
    late = torch.zeros(1, 1, 2, 12)
    late[..., 6] = 0.5
    late[..., 8] = 0.4
    policy.observe(mem, late, rows_left=0)
    assert kept(policy, mem) == [[6, 8, 10, 11]]


def test_snapkv_pools_only_the_tokens_before_the_window_with_zero_padding():
    """As its authors and kvpress pool: the window's own columns and the padding do not raise the scores
    of the tokens at the edges (pooling every column without the padding keeps token 5 instead of 1)."""
    mem = memory(8)
    policy = SnapKV(budget=4, window=2, kernel=3)
    window = torch.zeros(1, 1, 2, 8)
    window[0, 0, 0, :3] = torch.tensor([0.6, 0.06, 0.03])
    window[0, 0, 0, 5] = 0.3
    window[0, 0, 1, 6] = 0.9  # the window attending to itself
    policy.observe(mem, window, rows_left=0)
    assert kept(policy, mem) == [[0, 1, 6, 7]]


def test_random_is_seeded_and_keeps_budget():
    a = kept(RandomEviction(budget=0.5, seed=3), memory(20))
    b = kept(RandomEviction(budget=0.5, seed=3), memory(20))
    assert a == b and len(a[0]) == 10 and a[0][-1] == 19


def test_selection_is_per_head():
    keys = torch.zeros(1, 2, 4, 1)
    keys[0, 0, :, 0] = torch.tensor([1.0, 9.0, 9.0, 9.0])
    keys[0, 1, :, 0] = torch.tensor([9.0, 9.0, 1.0, 9.0])
    assert kept(L2Norm(budget=2), memory(keys=keys)) == [[0, 3], [2, 3]]


def test_fraction_budget_follows_processed_tokens():
    mem = memory(10)
    mem.evict(torch.tensor([[[5, 6, 7, 8, 9]]]))
    assert mem.processed == 10
    assert Budget(0.3).tokens(mem.processed) == 3
    assert Budget(101 / 308).tokens(308) == 101 and Budget(0.1).tokens(30) == 3  # no float overshoot
    assert kept(Recency(budget=0.3, n_sink=0), mem) == [[2, 3, 4]]


def test_eviction_moves_positions_and_state_together():
    mem = memory(5)
    mem.state["score"] = torch.arange(5.0).view(1, 1, 5)
    mem.keys[..., 0] = torch.arange(5.0)
    mem.evict(torch.tensor([[[1, 4]]]))
    assert mem.positions[0, 0].tolist() == [1, 4]
    assert mem.keys[0, 0, :, 0].tolist() == [1.0, 4.0]
    assert mem.state["score"][0, 0].tolist() == [1.0, 4.0]


@pytest.mark.parametrize("bad", [0, -3, 0.0, 1.5, -0.2, "abc", True])
def test_bad_budgets_are_refused(bad):
    with pytest.raises(ValueError, match="budget"):
        Budget(bad)


def test_budget_larger_than_the_model_context_is_refused():
    with pytest.raises(ValueError, match="larger than the cache"):
        H2O(budget=10_000).check_capacity(8192)


def test_unknown_policy_name():
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("lru")


def test_observers_accept_rows_that_see_only_part_of_the_memory():
    """Inside a prompt chunk, early rows see fewer tokens than the memory holds."""
    for policy in (H2O(budget=2), TOVA(budget=2), SnapKV(budget=2, window=1, kernel=1)):
        mem = memory(6)
        probs = torch.zeros(1, 1, 1, 4)
        probs[..., 1] = 1.0
        policy.observe(mem, probs, rows_left=0)
        assert kept(policy, mem) == [[1, 5]], policy
