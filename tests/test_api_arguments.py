"""The Python API refuses a wrong argument with a message naming it, and nested `attach` blocks each
restore what was there (tiny random Llama, no download)."""
import pytest
import torch

from adapters.hf import attach, greedy_generate
from core.errors import UserError
from core.policies import H2O, FullCache
from test_adapter_llama import tiny_llama


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


def ids(n=40, seed=0):
    return torch.randint(0, 128, (1, n), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("call, words", [
    (lambda m: attach(m, "h2o").__enter__(), r"policy: expected a MemoryPolicy or None, got str 'h2o'"),
    (lambda m: attach(m, H2O(0.5), observe_rows=0).__enter__(), r"observe_rows: must be at least 1, got 0"),
    (lambda m: attach(m, None, observe_rows=2.5).__enter__(), r"observe_rows: expected an integer, got float"),
    (lambda m: attach(m, H2O(0.5), exact="yes").__enter__(), r"exact: expected True or False, got str 'yes'"),
    (lambda m: greedy_generate(m, ids(), H2O(0.5), exact=1), r"exact: expected True or False, got int 1"),
    (lambda m: greedy_generate(m, ids(), "h2o"), r"policy: expected a MemoryPolicy"),
    (lambda m: greedy_generate(m, ids(), prefill_chunk=0), r"prefill_chunk: must be at least 1, got 0"),
    (lambda m: greedy_generate(m, ids(), observe_rows=0), r"observe_rows: must be at least 1, got 0"),
    (lambda m: greedy_generate(m, ids(), max_new_tokens=-3), r"max_new_tokens: must be at least 0, got -3"),
    (lambda m: greedy_generate(m, ids(), max_new_tokens=True), r"max_new_tokens: expected an integer, got bool"),
    (lambda m: greedy_generate(m, torch.zeros(1, 0, dtype=torch.long)), r"input_ids: empty \(shape \[1, 0\]\)"),
    (lambda m: greedy_generate(m, ids().float()), r"input_ids: expected integer token ids, got dtype torch\.float32"),
    (lambda m: greedy_generate(m, torch.tensor([[1, 2, 128]])), r"input_ids: token id 128 is outside the model's "
                                                                  r"vocabulary \[0, 128\)"),
    (lambda m: greedy_generate(m, torch.tensor([[1, -1]])), r"input_ids: token id -1 is outside"),
    (lambda m: greedy_generate(m, [[1, 2, 3]]), r"input_ids: expected a tensor of token ids, got list"),
])
def test_a_wrong_argument_is_named(model, call, words):
    with pytest.raises(UserError, match=words):
        call(model)
    assert model.config._attn_implementation == "sdpa"  # a refused attach changes nothing


def test_a_string_policy_is_also_a_type_error(model):
    with pytest.raises(TypeError):
        greedy_generate(model, ids(), "h2o")


def test_zero_new_tokens_is_a_prefill_and_numpy_counts_pass(model):
    import numpy as np

    assert greedy_generate(model, ids(), max_new_tokens=0).tokens == [[]]
    assert len(greedy_generate(model, ids(), max_new_tokens=np.int64(2), prefill_chunk=np.int32(16)).tokens[0]) == 2


def test_nested_attach_restores_the_outer_block(model):
    prompt = ids(100, seed=1)
    with attach(model, H2O(0.25, n_up=32)) as alone:
        expected = model.generate(prompt, max_new_tokens=4, do_sample=False)
    expected_fraction = alone.cache.fraction()
    assert expected_fraction < 0.5
    with attach(model, H2O(0.25, n_up=32)) as outer:
        with attach(model, FullCache()) as inner:
            model.generate(prompt, max_new_tokens=4, do_sample=False)
            assert inner.cache.fraction() == 1.0
        out = model.generate(prompt, max_new_tokens=4, do_sample=False)
        assert outer.cache.fraction() == expected_fraction  # was 1.0: the inner block took the policy away
        assert torch.equal(out, expected)
    assert model.config._attn_implementation == "sdpa"
    before = model(prompt).logits
    with attach(model, H2O(0.25, n_up=32)):
        pass
    assert torch.equal(model(prompt).logits, before)
