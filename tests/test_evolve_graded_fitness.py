"""Graded fitnesses (teacher-forced answer log-probability, KL to the full cache), the cache-size
target, and members evaluated from a shared prompt prefix."""
import zlib

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from adapters.hf import greedy_generate
from adapters.hf.prefix import SharedPrefix
from adapters.hf.teacher_forcing import answer_logprobs
from core.namm import NAMM, NAMMConfig
from core.policies import FullCache, Recency
from evolve.config import ConfigError, parse_config
from evolve.distributed import Dist
from evolve.lm_fitness import LMFitness, answer_margin, prompt_value
from evolve.loop import objective
from evolve.prompts import Prompt

N_UP = 32


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      attn_implementation="sdpa")
    return LlamaForCausalLM(cfg).eval()


def evicting_namm(seed=3):
    """A NAMM with random parameters: it evicts a good share of every layer at each update."""
    config = NAMMConfig(n_up=N_UP)
    g = torch.Generator().manual_seed(seed)
    params = 0.3 * torch.randn(config.bam.n_params, generator=g)
    return NAMM(config, params.numpy())


def config_text(metric, shared=True):
    return (f"fitness: lm\nlm_metric: {metric}\nshared_prefix: {str(shared).lower()}\nnamm: {{n_up: {N_UP}}}\n"
            "heldout_prompts: 1\nstages:\n  - {tasks: [passkey, fact_qa], generations: 1, prompts_per_task: 2, "
            "prompt_length: 100}\n")


class TokenSource:
    """Random-token prompts with random gold answers (a tiny random model has no task to solve)."""
    name = "tokens"

    def draw(self, task, n, length, label):
        g = torch.Generator().manual_seed(zlib.crc32(f"{task}/{label}".encode()))  # hash() differs per process
        return [Prompt(task, torch.randint(0, 128, (1, 3 * N_UP + 7 + i), generator=g), 4, lambda text: 0.0,
                       torch.randint(0, 128, (5,), generator=g)) for i in range(n)]

    heldout = draw


def fitness_on_tiny(tmp_path, metric, shared):
    config = parse_config(config_text(metric, shared), "cfg.yaml")
    fitness = LMFitness(config, tmp_path, Dist(), model=tiny_llama(), tokenizer=None)
    fitness.source = TokenSource()
    fitness.begin_generation(0, 0)
    return fitness


@pytest.mark.parametrize("metric", ["answer_logprob", "kl", "answer_margin"])
def test_full_cache_scores_exactly_one_and_eviction_scores_less(tmp_path, metric, one_thread):
    fitness = fitness_on_tiny(tmp_path, metric, shared=False)
    assert fitness.evaluate(FullCache()).fitness == 1.0
    if metric == "kl":  # any change of the distributions costs KL; the log-probability may go either way
        evicted = fitness.evaluate(evicting_namm())
        assert evicted.cache_fraction < 0.8
        assert evicted.fitness < 1.0


def test_prompt_values():
    ref = torch.log_softmax(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), dim=-1)
    worse = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    answer = torch.tensor([0, 1])
    assert prompt_value("answer_logprob", ref, ref, answer) == 1.0
    assert prompt_value("kl", ref, ref, answer) == 1.0
    lp = prompt_value("answer_logprob", ref, worse, answer)
    expected = np.exp(((worse[0, 0] + worse[1, 1]) - (ref[0, 0] + ref[1, 1])).item() / 2)
    assert lp == pytest.approx(expected) and lp < 1.0
    assert 0.0 < prompt_value("kl", ref, worse, answer) < 1.0


@pytest.mark.parametrize("metric", ["answer_logprob", "kl", "answer_margin"])
def test_shared_prefix_gives_exactly_the_fitness_from_scratch(tmp_path, metric, one_thread):
    shared = fitness_on_tiny(tmp_path / "a", metric, shared=True)
    alone = fitness_on_tiny(tmp_path / "b", metric, shared=False)
    assert shared.current[0].prefixes[0] is not None and alone.current[0].prefixes is None
    namm = evicting_namm()
    a, b = shared.evaluate(namm), alone.evaluate(namm)
    assert a.cache_fraction < 0.9
    assert a.fitness == b.fitness and a.cache_fraction == b.cache_fraction


def test_answer_margin_ranks_as_the_greedy_answer_where_the_mean_log_probability_does_not():
    answer = torch.tensor([0, 1, 2])
    ref = torch.log_softmax(torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]), dim=-1)
    # right at every position, each by a small margin
    right = torch.log_softmax(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
    # sure of two tokens, wrong on the one that decides the answer
    wrong = torch.log_softmax(torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 2.0, 1.0]]), dim=-1)
    assert answer_margin(right, answer) == pytest.approx(1.0 - 0.0)
    assert answer_margin(wrong, answer) == pytest.approx(-1.0)
    mean = lambda c: prompt_value("answer_logprob_clipped", ref, c, answer)  # noqa: E731
    margin = lambda c: prompt_value("answer_margin", ref, c, answer)  # noqa: E731
    assert mean(wrong) > mean(right)  # the mean rewards the wrong answer
    assert margin(right) > margin(wrong)
    assert margin(ref) == 1.0 and margin(right) == pytest.approx(1.0 - (3.0 - 1.0) / 6.0)
    assert margin(wrong) == pytest.approx(1.0 - (3.0 + 1.0) / 6.0)
    # bounded: nothing scores below 0, and a member never earns more than the full cache
    hopeless = torch.log_softmax(torch.tensor([[0.0, 50.0, 0.0]] * 3), dim=-1)
    assert margin(hopeless) == 0.0 and prompt_value("answer_margin", right, ref, answer) == 1.0


def test_answer_margin_is_positive_exactly_when_greedy_decoding_gives_the_answer(one_thread):
    """Teacher forcing and decoding agree: the margin of the greedy continuation is positive, and changing
    one of its tokens makes it negative."""
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 3 * N_UP + 5), generator=torch.Generator().manual_seed(4))
    for policy in (FullCache(), evicting_namm()):
        greedy = greedy_generate(model, ids, policy, max_new_tokens=5, prefill_chunk=N_UP)
        tokens = torch.tensor(greedy.tokens[0])
        run = answer_logprobs(model, ids, tokens, policy, prefill_chunk=N_UP)
        assert answer_margin(run.logprobs, tokens) > 0
        altered = tokens.clone()
        altered[2] = (altered[2] + 1) % 128
        run = answer_logprobs(model, ids, altered, policy, prefill_chunk=N_UP)
        assert answer_margin(run.logprobs, altered) < 0


@pytest.mark.parametrize("exact", [True, False])
def test_shared_prefix_generation_and_answer_are_bit_identical(exact, one_thread):
    """On either attention path, a member from the prefix computed on that path equals one from scratch."""
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 4 * N_UP + 5), generator=torch.Generator().manual_seed(1))
    answer = torch.randint(0, 128, (6,), generator=torch.Generator().manual_seed(2))
    prefix = SharedPrefix(model, ids, NAMM.zeros(NAMMConfig(n_up=N_UP)), exact=exact)
    namm = evicting_namm()
    scratch = greedy_generate(model, ids, namm, max_new_tokens=N_UP + 3, prefill_chunk=N_UP, return_logits=True,
                              exact=exact)
    resumed = greedy_generate(model, ids, namm, max_new_tokens=N_UP + 3, prefill_chunk=N_UP, return_logits=True,
                              cache=prefix.cache_for(namm), exact=exact)
    assert scratch.cache_fraction < 0.9
    assert scratch.tokens == resumed.tokens and scratch.kept_tokens == resumed.kept_tokens
    assert all(torch.equal(x, y) for x, y in zip(scratch.logits, resumed.logits))
    a = answer_logprobs(model, ids, answer, namm, prefill_chunk=N_UP, exact=exact)
    b = answer_logprobs(model, ids, answer, namm, prefill_chunk=N_UP, cache=prefix.cache_for(namm), exact=exact)
    assert torch.equal(a.logprobs, b.logprobs) and a.cache_fraction == b.cache_fraction
    # the prefix itself is left untouched by members
    assert prefix.cache.fraction() == 1.0


def test_shared_prefix_refuses_another_observer_and_short_prompts():
    model = tiny_llama()
    prefix = SharedPrefix(model, torch.randint(0, 128, (1, 2 * N_UP)), NAMM.zeros(NAMMConfig(n_up=N_UP)))
    with pytest.raises(ValueError, match="n_up"):
        prefix.cache_for(NAMM.zeros(NAMMConfig(n_up=2 * N_UP)))
    with pytest.raises(ValueError, match="longer than n_up"):
        SharedPrefix(model, torch.randint(0, 128, (1, N_UP)), NAMM.zeros(NAMMConfig(n_up=N_UP)))


@pytest.mark.slow
def test_answer_logprob_drops_when_the_evidence_is_evicted(smollm2):
    """On the embedded model: a passkey whose needle a small recency window evicts loses most of the
    answer's probability; the full cache scores exactly 1."""
    from evolve.prompts import BuiltinPrompts

    model, tokenizer = smollm2
    prompt = BuiltinPrompts(tokenizer).draw("passkey", 1, 700, "graded-test")[0]
    full = answer_logprobs(model, prompt.ids, prompt.answer_ids, FullCache())
    assert full.token_logprobs.mean().exp() > 0.5  # the model knows the key
    window = answer_logprobs(model, prompt.ids, prompt.answer_ids, Recency(64, n_up=128, update_at_prompt_end=True))
    assert window.cache_fraction < 0.3
    value = prompt_value("answer_logprob", full.logprobs, window.logprobs, prompt.answer_ids)
    assert value < 0.5
    assert prompt_value("kl", full.logprobs, window.logprobs, prompt.answer_ids) < 0.9


def test_target_cache_penalises_only_the_excess():
    config = parse_config(config_text("kl") + "target_cache: 0.5\ntarget_weight: 2.0\n", "cfg.yaml")
    values = objective(config, np.array([1.0, 1.0, 0.8]), np.array([0.3, 0.7, 0.5]))
    assert values.tolist() == pytest.approx([1.0, 1.0 - 2.0 * 0.2, 0.8])
    plain = parse_config(config_text("kl"), "cfg.yaml")
    assert objective(plain, np.array([0.9]), np.array([0.95])).tolist() == [0.9]
    with pytest.raises(ConfigError, match="target_cache"):
        parse_config(config_text("kl") + "target_cache: 1.5\n", "cfg.yaml")
    with pytest.raises(ConfigError, match="lm_metric"):
        parse_config(config_text("bleu"), "cfg.yaml")
