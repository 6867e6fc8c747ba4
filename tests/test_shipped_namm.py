"""The NAMM shipped in checkpoints/namm-smollm2 (evolved with configs/evolve_smollm2_cpu.yaml) loads,
carries its frozen normalisation and evicts on the embedded model."""
from pathlib import Path

import pytest
import torch
import yaml

from core.namm import NAMM

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "namm-smollm2"


def test_shipped_namm_loads_with_its_evolution_record():
    namm = NAMM.from_pretrained(SHIPPED)
    assert namm.n_params == 4172 and namm.params.abs().sum() > 0
    assert not torch.allclose(namm.normaliser.mean, torch.zeros_like(namm.normaliser.mean))
    config = yaml.safe_load((SHIPPED / "evolution" / "config.yaml").read_text())
    assert config["namm"]["n_up"] == namm.config.n_up
    assert (SHIPPED / "evolution" / "log.jsonl").read_text().count("\n") == sum(
        s["generations"] for s in config["stages"])


@pytest.mark.slow
def test_shipped_namm_evicts_on_the_embedded_model(smollm2):
    from adapters.hf import greedy_generate
    from eval.lm import builtin_tasks as bt

    model, tokenizer = smollm2
    item = bt.make_items("passkey", 1, 1100, seed=5, tokenizer=tokenizer)[0]
    ids = tokenizer(bt.render(item, tokenizer), return_tensors="pt").input_ids
    out = greedy_generate(model, ids, NAMM.from_pretrained(SHIPPED), max_new_tokens=4,
                          eos_token_id=tokenizer.eos_token_id)
    assert 0.2 < out.cache_fraction < 0.99
    assert min(out.kept_tokens) < max(out.kept_tokens)  # per-layer decisions, not one global cut
