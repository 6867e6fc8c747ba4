"""The named `cache_weight` option: CMA-ES maximises task fitness - weight x cache fraction."""
import numpy as np
import pytest

from evolve.config import ConfigError, parse_config
from evolve.evaluation import Evaluation
from evolve.loop import evolve
from evolve.runlog import read_log

CONFIG = """
fitness: toy
seed: 1
popsize: 8
eval_every: 3
stages:
  - {name: one, tasks: [a], generations: 6, prompts_per_task: 1, prompt_length: 64}
"""


class CacheOnly:
    """Every member solves the task (fitness 1); its cache fraction grows with its first parameter."""

    def calibrate(self, namm):
        pass

    def begin_generation(self, stage_index, generation):
        pass

    def _evaluation(self, namm):
        return Evaluation(1.0, float(np.clip(0.5 + 3 * namm.params[0].item(), 0.0, 1.0)))

    evaluate = _evaluation

    def evaluate_heldout(self, namm, stage_index):
        return self._evaluation(namm)


def test_cache_weight_pushes_the_mean_to_smaller_caches(tmp_path):
    config = parse_config(CONFIG + "cache_weight: 0.5\n", "cfg.yaml")
    optimizer = evolve(config, tmp_path, fitness=CacheOnly(), progress=False)
    assert optimizer.mean[0] < -0.05
    rows = read_log(tmp_path)
    assert rows[-1]["cache_fraction_mean"] < rows[0]["cache_fraction_mean"]
    for row in rows:
        assert row["task_fitness_mean"] == 1.0
        assert row["fitness_mean"] == pytest.approx(1.0 - 0.5 * row["cache_fraction_mean"])
    held = [r for r in rows if "heldout_fitness" in r]
    assert held and all(r["heldout_fitness"] == pytest.approx(1.0 - 0.5 * r["heldout_cache_fraction"]) for r in held)


def test_without_cache_weight_the_objective_is_the_task_fitness(tmp_path):
    rows_dir = tmp_path / "plain"
    evolve(parse_config(CONFIG, "cfg.yaml"), rows_dir, fitness=CacheOnly(), progress=False)
    rows = read_log(rows_dir)
    assert all(r["fitness_mean"] == 1.0 and "task_fitness_mean" not in r for r in rows)


def test_cache_weight_needs_a_number():
    with pytest.raises(ConfigError, match=r"cfg.yaml:\d+: field 'cache_weight'"):
        parse_config(CONFIG + "cache_weight: lots\n", "cfg.yaml")
