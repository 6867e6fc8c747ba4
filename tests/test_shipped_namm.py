"""The NAMM shipped in checkpoints/namm-smollm2 (evolved with configs/evolve_smollm2_cpu.yaml) loads,
carries its frozen normalisation and keeps the cache fraction its model card states. The expected values
come from the checkpoint's own files, so a replaced checkpoint is checked against its own card."""
import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml

from core.namm import NAMM
from eval.lm.resume_key import checkpoint_sha256

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "namm-smollm2"


def test_shipped_namm_loads_with_its_evolution_record():
    namm = NAMM.from_pretrained(SHIPPED)
    assert namm.n_params == 4172 and namm.params.abs().sum() > 0
    assert not torch.allclose(namm.normaliser.mean, torch.zeros_like(namm.normaliser.mean))
    config = yaml.safe_load((SHIPPED / "evolution" / "config.yaml").read_text())
    assert config["namm"]["n_up"] == namm.n_up
    log = [json.loads(line) for line in (SHIPPED / "evolution" / "log.jsonl").read_text().splitlines()]
    assert [row["generation"] for row in log] == list(range(len(log)))  # a run may stop before its last generation
    assert len(log) <= sum(s["generations"] for s in config["stages"])
    best = json.loads((SHIPPED / "evolution" / "best.json").read_text())
    assert "heldout_fitness" in log[best["generation"]]  # the shipped mean was chosen on held-out prompts


def _card_runs() -> list[tuple[Path, dict]]:
    """The checkpoint's own eval.lm results of its NAMM on the built-in suite and the embedded SmolLM2 it was
    evolved on (the model card's tables; its transfer to Gemma 3 is recorded beside them)."""
    runs = []
    for path in sorted(SHIPPED.rglob("results.json")):
        data = json.loads(path.read_text())
        whole_prompt = data.get("protocol", "whole-prompt") == "whole-prompt"
        is_lm = "tasks" in data  # eval.video's builtin results have no task list
        on_smollm2 = data.get("model", "smollm2") == "smollm2"
        if is_lm and on_smollm2 and data.get("benchmark") == "builtin" and "namm" in data.get("policies", {}) \
                and whole_prompt:
            runs.append((path, data))
    return runs


def test_the_checkpoint_records_its_namms_cache_fraction():
    runs = _card_runs()
    assert runs, f"{SHIPPED} holds no eval.lm results of its NAMM (*/results.json)"
    for path, data in runs:
        if "ckpt_sha256" in data:
            assert data["ckpt_sha256"] == checkpoint_sha256(str(SHIPPED)), f"{path} is another checkpoint's"
        for task in data["tasks"]:
            assert 0 < data["policies"]["namm"][task]["cache_fraction"] <= 1


@pytest.mark.slow
def test_shipped_namm_keeps_the_cache_fraction_its_model_card_states(smollm2):
    """The NAMM again on the items of the checkpoint's smallest recorded task: its mean cache fraction is
    the one in the checkpoint's results.json (the model card's "cache" column)."""
    from adapters.hf import greedy_generate
    from eval.lm import builtin_tasks as bt
    from eval.lm.run import add_arguments

    model, tokenizer = smollm2
    path, data, task = min(((p, d, t) for p, d in _card_runs() for t in d["tasks"]),
                           key=lambda run: run[1]["policies"]["namm"][run[2]]["n"])
    recorded = data["policies"]["namm"][task]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = parser.parse_args([])  # the settings of a run that recorded none
    items = bt.make_items(task, recorded["n"], data.get("length", defaults.length), seed=data.get("seed", defaults.seed),
                          tokenizer=tokenizer)
    fractions, kept = [], []
    for item in items:
        ids = tokenizer(bt.render(item, tokenizer), return_tensors="pt").input_ids
        out = greedy_generate(model, ids, NAMM.from_pretrained(SHIPPED), max_new_tokens=bt.MAX_NEW_TOKENS[task],
                              eos_token_id=tokenizer.eos_token_id)
        fractions.append(out.cache_fraction)
        kept.append(out.kept_tokens)
    assert sum(fractions) / len(fractions) == pytest.approx(recorded["cache_fraction"], abs=0.005), f"{path}: {task}"
    assert any(min(k) < max(k) for k in kept)  # per-layer decisions, not one global cut
