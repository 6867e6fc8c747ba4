"""Evolving NAMM-X: a bounded fitness, a shared prefix that stays exact for its observer state, generation 0
at a baseline's readout, and a run that resumes exactly."""
import json

import numpy as np
import pytest
import torch

from adapters.hf import greedy_generate
from adapters.hf.prefix import SharedPrefix
from adapters.hf.teacher_forcing import answer_logprobs
from core.namm import NAMM, NAMMConfig
from core.namm_x import baseline_readout
from core.policies import FullCache, Recency
from evolve.config import ConfigError, parse_config
from evolve.distributed import Dist
from evolve.lm_fitness import LMFitness, prompt_value
from evolve.loop import START_FILE, evolve
from tests.test_evolve_graded_fitness import N_UP, TokenSource, tiny_llama

NAMM_X = ("{n_up: %d, update_at_prompt_end: true, features: namm_x, selection: topk, budget: 0.4, "
          "head_mode: shared}" % N_UP)


def config_text(extra=""):
    return (f"fitness: lm\nlm_metric: answer_logprob_clipped\nnamm: {NAMM_X}\nheldout_prompts: 1\npopsize: 4\n"
            "diagonal: false\nstages:\n  - {tasks: [passkey, fact_qa], generations: 2, prompts_per_task: 2, "
            "prompt_length: 100}\n" + extra)


def test_the_clipped_value_is_bounded_and_full_cache_scores_the_maximum():
    ref = torch.log_softmax(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), dim=-1)
    better = torch.log_softmax(torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0]]), dim=-1)
    worse = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=-1)
    hopeless = torch.log_softmax(torch.tensor([[-30.0, 0.0, 0.0], [0.0, -30.0, 0.0]]), dim=-1)
    answer = torch.tensor([0, 1])
    value = lambda cand, clip=3.0: prompt_value("answer_logprob_clipped", ref, cand, answer, clip)  # noqa: E731
    assert value(ref) == 1.0 and value(better) == 1.0  # never above the full cache
    d = ((worse[0, 0] + worse[1, 1]) - (ref[0, 0] + ref[1, 1])).item() / 2
    assert value(worse) == pytest.approx(1.0 + d / 3.0) and 0.0 < value(worse) < 1.0
    assert value(hopeless) == 0.0 and value(hopeless, clip=100.0) > 0.0


def test_on_a_tiny_llama_the_full_cache_scores_1_and_dropping_evidence_scores_less(tmp_path, one_thread):
    config = parse_config(config_text("shared_prefix: false\n"), "cfg.yaml")  # baselines have no shared prefix
    fitness = LMFitness(config, tmp_path, Dist(), model=tiny_llama(), tokenizer=None)
    fitness.source = TokenSource()
    fitness.begin_generation(0, 0)
    assert fitness.evaluate(FullCache()).fitness == 1.0
    window = Recency(8, n_up=N_UP, update_at_prompt_end=True)
    evicted = fitness.evaluate(window)
    assert evicted.cache_fraction < 0.3 and 0.0 <= evicted.fitness < 1.0


@torch.no_grad()
@pytest.mark.parametrize("exact", [True, False])
def test_a_namm_x_member_from_the_shared_prefix_is_bit_identical_to_one_from_scratch(exact, one_thread):
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 4 * N_UP + 5), generator=torch.Generator().manual_seed(1))
    config = NAMMConfig(**json.loads(json.dumps(dict(n_up=N_UP, update_at_prompt_end=True, features="namm_x",
                                                      selection="topk", budget=0.4, head_mode="per_head"))))
    namm = NAMM(config, 0.5 * torch.randn(config.n_params, generator=torch.Generator().manual_seed(4)))
    prefix = SharedPrefix(model, ids, NAMM.observer(config), exact=exact)
    scratch = greedy_generate(model, ids, namm, max_new_tokens=5, prefill_chunk=N_UP, return_logits=True, exact=exact)
    resumed = greedy_generate(model, ids, namm, max_new_tokens=5, prefill_chunk=N_UP, return_logits=True,
                              cache=prefix.cache_for(namm), exact=exact)
    assert scratch.cache_fraction < 0.6
    assert scratch.tokens == resumed.tokens and scratch.kept_tokens == resumed.kept_tokens
    assert all(torch.equal(x, y) for x, y in zip(scratch.logits, resumed.logits))
    answer = torch.randint(0, 128, (4,), generator=torch.Generator().manual_seed(2))
    a = answer_logprobs(model, ids, answer, namm, prefill_chunk=N_UP, exact=exact)
    b = answer_logprobs(model, ids, answer, namm, prefill_chunk=N_UP, cache=prefix.cache_for(namm), exact=exact)
    assert torch.equal(a.logprobs, b.logprobs)
    with pytest.raises(ValueError, match="must not evict"):
        SharedPrefix(model, ids, namm)


def run_tiny(tmp_path, name, extra="", generations=None, resume=False):
    config = parse_config(config_text(extra), "cfg.yaml",
                          [] if generations is None else [f"stages.0.generations={generations}"])
    fitness = LMFitness(config, tmp_path / name, Dist(), model=tiny_llama(), tokenizer=None)
    fitness.source = TokenSource()
    return evolve(config, tmp_path / name, fitness=fitness, resume=resume, progress=False)


def test_generation_0_starts_at_the_best_baseline_readout_and_a_run_resumes_exactly(tmp_path, one_thread):
    whole = run_tiny(tmp_path, "whole", "init_readout: best\n")
    start = json.loads((tmp_path / "whole" / START_FILE).read_text())
    scores = start["generation_0_fitness"]
    assert set(scores) == {"tova", "h2o", "snapkv", "l2", "recency"}
    assert start["init_readout"] == max(scores, key=scores.get)
    config = NAMMConfig(**parse_config(config_text(), "cfg.yaml").namm)
    x0 = baseline_readout(config.feature_names, 0, start["init_readout"]).double().numpy()
    assert np.array_equal(whole.x0, x0)
    assert whole.dim == 26 and whole.spec["diagonal"] is False
    run_tiny(tmp_path, "split", "init_readout: best\n", generations=1)
    resumed = run_tiny(tmp_path, "split", "init_readout: best\n", resume=True)
    assert np.array_equal(resumed.mean, whole.mean) and resumed.sigma == whole.sigma


def test_config_errors_name_the_namm_field():
    with pytest.raises(ConfigError, match="'namm.selection'"):
        parse_config(config_text().replace("selection: topk", "selection: top"), "cfg.yaml")
    with pytest.raises(ConfigError, match="'namm.budget'"):
        parse_config(config_text().replace("budget: 0.4", "budget: 2.0"), "cfg.yaml")
    with pytest.raises(ConfigError, match="init_readout"):
        parse_config(config_text("init_readout: bam\n"), "cfg.yaml")
    paper = config_text("init_readout: h2o\n").replace(NAMM_X, "{n_up: 32}")
    with pytest.raises(ConfigError, match="namm_x"):
        parse_config(paper, "cfg.yaml")
