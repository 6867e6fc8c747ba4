"""One update schedule for every policy of a comparison, and the cache fraction a matched budget copies."""
import json

import pytest
import torch

from adapters.hf import greedy_generate
from core.namm import NAMM
from core.policies import Schedule
from core.registry import make_policy
from eval.lm.checks import policy_names
from tests.test_adapter_llama import tiny_llama


def test_one_schedule_object_reaches_every_policy():
    schedule = Schedule(64, at_prompt_end=True)
    for name in policy_names():
        policy = make_policy(name, budget=0.5, ckpt="zeros", schedule=schedule)
        assert policy.schedule is schedule, name
        assert (policy.n_up, policy.update_at_prompt_end) == (64, True), name


def test_a_policy_takes_a_schedule_or_its_fields_not_both():
    with pytest.raises(ValueError, match="either a schedule or n_up"):
        make_policy("h2o", budget=0.5, schedule=Schedule(64), n_up=32)
    with pytest.raises(ValueError, match="n_up must be a positive number of tokens"):
        Schedule(0)


def test_a_namm_checkpoint_binds_the_schedule_fields_its_config_sets(window_namm):
    folder = window_namm(window=10, n_up=64, at_prompt_end=False)
    with pytest.raises(ValueError, match="sets n_up 64"):
        make_policy("namm", ckpt=str(folder), schedule=Schedule(32, at_prompt_end=False))
    with pytest.raises(ValueError, match="sets update_at_prompt_end False"):
        make_policy("namm", ckpt=str(folder), schedule=Schedule(64, at_prompt_end=True))
    schedule = Schedule(64, at_prompt_end=False)
    assert make_policy("namm", ckpt=str(folder), schedule=schedule).schedule is schedule
    # A config.json without the fields sets nothing: the run's schedule decides, as for the all-zero NAMM.
    config = json.loads((folder / "config.json").read_text())
    del config["n_up"], config["update_at_prompt_end"]
    (folder / "config.json").write_text(json.dumps(config))
    free = Schedule(32, at_prompt_end=True)
    namm = make_policy("namm", ckpt=str(folder), schedule=free)
    assert namm.schedule is free and (namm.n_up, namm.update_at_prompt_end) == (32, True)


@torch.no_grad()
def test_a_budget_of_the_namms_fraction_at_its_last_update_ends_with_its_cache_size(window_namm):
    """70 prompt tokens and 5 fed answer tokens on n_up 32: the last update is at token 64, when the NAMM
    keeps 21 tokens; a baseline given 21/64 holds as many tokens at the end, within one, while one given
    the NAMM's final fraction (which counts the 11 tokens added since) holds more."""
    model = tiny_llama(seed=1)
    ids = torch.randint(0, 128, (1, 70), generator=torch.Generator().manual_seed(3))
    schedule = Schedule(32, at_prompt_end=False)
    namm = make_policy("namm", ckpt=str(window_namm(window=20, n_up=32)), schedule=schedule)
    out = greedy_generate(model, ids, namm, max_new_tokens=6)
    assert out.processed_tokens == 75 and out.kept_tokens == [32, 32, 32]
    assert out.fraction_at_update == pytest.approx(21 / 64)
    matched = greedy_generate(model, ids, make_policy("l2", budget=out.fraction_at_update, schedule=schedule),
                              max_new_tokens=6)
    assert matched.processed_tokens == 75
    assert abs(matched.cache_fraction - out.cache_fraction) * 75 <= 1
    larger = greedy_generate(model, ids, make_policy("l2", budget=out.cache_fraction, schedule=schedule),
                             max_new_tokens=6)
    assert (larger.cache_fraction - out.cache_fraction) * 75 > 1
    assert NAMM.zeros().fixed_schedule == {}
