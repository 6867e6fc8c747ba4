"""The LM fitness without a model: per-task ratio to the full-cache mean, averaged over tasks; full-cache
scores computed once per prompt set and cached on disk."""
import torch

from core.namm import NAMM
from core.policies import FullCache
from evolve.config import parse_config
from evolve.distributed import Dist
from evolve.lm_fitness import LMFitness
from evolve.prompts import Prompt

CONFIG = """fitness: lm
heldout_prompts: 2
stages:
  - {tasks: [passkey, fact_qa, kv_retrieval], generations: 2, prompts_per_task: 2, prompt_length: 64}
"""

# per task: (full-cache scores, candidate scores) of the two prompts
SCORES = {"passkey": ([1.0, 1.0], [1.0, 0.0]), "fact_qa": ([1.0, 0.0], [1.0, 0.0]), "kv_retrieval": ([0.0, 0.0], [1.0, 1.0])}


class FakeSource:
    name = "fake"

    def draw(self, task, n, length, label):
        return [Prompt(task, torch.tensor([[i]]), 4, lambda text: 0.0) for i in range(n)]

    heldout = draw


def test_ratio_to_full_cache_and_cached_baseline(tmp_path):
    config = parse_config(CONFIG, "cfg.yaml")
    fitness = LMFitness(config, tmp_path, Dist(), model=object(), tokenizer=None)
    fitness.source = FakeSource()
    calls = []

    def fake_run(policy, prompt, cache=None):
        calls.append(type(policy).__name__)
        full, cand = SCORES[prompt.task]
        scores = full if isinstance(policy, FullCache) else cand
        return scores[int(prompt.ids[0, 0])], 0.5

    fitness._run = fake_run
    fitness.begin_generation(0, 0)
    result = fitness.evaluate(NAMM.zeros())
    # passkey 0.5 / 1.0, fact_qa 0.5 / 0.5; kv_retrieval has no full-cache reference and is left out
    assert result.fitness == 0.75 and result.cache_fraction == 0.5
    assert calls.count("FullCache") == 6 and len(list((tmp_path / "fullcache").glob("*.json"))) == 3
    calls.clear()
    fitness.begin_generation(0, 0)  # the same prompt set again (e.g. after a resume): read from disk
    assert "FullCache" not in calls
    fitness.begin_generation(0, 1)  # a new generation draws new prompts
    assert calls.count("FullCache") == 6
    held = fitness.evaluate_heldout(NAMM.zeros(), 0)
    assert held.fitness == 0.75
