"""Bad configs and mismatched checkpoints get errors that name the file, the line and the field."""
import numpy as np
import pytest
import torch

from core.namm import NAMM, NAMMConfig
from evolve.config import ConfigError, load_config, parse_config
from evolve.loop import evolve

GOOD = """fitness: toy
popsize: 4
stages:
  - name: one
    tasks: [a]
    generations: 1
    prompts_per_task: 1
    prompt_length: 64
"""


def test_presets_parse():
    cpu = load_config("configs/evolve_smollm2_cpu.yaml")
    assert cpu.popsize >= 16 and all(1500 <= s.prompt_length <= 3000 for s in cpu.stages)
    assert cpu.lm_metric != "score" and cpu.target_cache == 0.5 and cpu.shared_prefix
    from eval.lm.builtin_tasks import TASKS
    heldout = {"kv_retrieval", "fewshot_classification", "phonebook"}
    assert heldout <= set(TASKS) and not heldout & {t for s in cpu.stages for t in s.tasks}
    assert NAMM.from_pretrained(cpu.init_from).n_params == NAMMConfig(**cpu.namm).bam.n_params
    phase2 = load_config("configs/evolve_smollm2_cpu_phase2.yaml")  # from phase 1's final mean, shipped
    assert phase2.init_from.endswith("phase1/mean-gen11") and phase2.target_cache < cpu.target_cache
    assert phase2.target_weight > cpu.target_weight
    paper = load_config("configs/evolve_llama3_paper.yaml", ["data_dir=somewhere"])
    assert paper.popsize == 32 and paper.sigma0 == 0.065 and paper.elite_ratio == 0.5
    assert [s.tasks[-1] for s in paper.stages] == ["passage_retrieval_en", "dureader", "narrativeqa"]
    assert all(s.prompts_per_task == 64 for s in paper.stages)


@pytest.mark.parametrize("bad, line, field, words", [
    ("    generations: many\n", 6, "stages[0].generations", "expected an integer"),
    ("    generations: 0\n", 6, "stages[0].generations", "at least 1"),
    ("    generation: 1\n", 6, "stages[0].generation", "unknown stage field"),
])
def test_malformed_stage_names_file_line_field(tmp_path, bad, line, field, words):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("    generations: 1\n", bad))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: field '{field}'") and words in message, message


def test_missing_and_unknown_fields():
    with pytest.raises(ConfigError, match=r"cfg.yaml:3: field 'stages\[0\].prompt_length': missing"):
        parse_config("fitness: toy\nstages:\n  - {tasks: [a], generations: 1, prompts_per_task: 1}\n", "cfg.yaml")
    with pytest.raises(ConfigError, match=r"cfg.yaml:2: field 'popsiz': unknown setting"):
        parse_config(GOOD.replace("popsize: 4", "popsiz: 4"), "cfg.yaml")
    with pytest.raises(ConfigError, match=r"cfg.yaml:5: field 'stages\[0\].tasks\[0\]': unknown builtin task"):
        parse_config(GOOD.replace("fitness: toy", "fitness: lm").replace("[a]", "[nope]"), "cfg.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("stages: [\n", "cfg.yaml")
    with pytest.raises(ConfigError, match=r"cfg.yaml:2: field 'exact': expected true or false, got 'yes please'"):
        parse_config(GOOD.replace("popsize: 4", "exact: yes please"), "cfg.yaml")
    assert parse_config(GOOD, "cfg.yaml").exact is False  # the default: attention computed once


def test_override_errors_name_the_override():
    with pytest.raises(ConfigError, match=r"override 'stages.0.generations=x': field 'stages\[0\].generations'"):
        parse_config(GOOD, "cfg.yaml", ["stages.0.generations=x"])
    with pytest.raises(ConfigError, match=r"field 'stages\[3\]' does not exist"):
        parse_config(GOOD, "cfg.yaml", ["stages.3.generations=2"])
    assert parse_config(GOOD, "cfg.yaml", ["stages.0.generations=3"]).stages[0].generations == 3


def test_resume_with_another_parameter_count_is_refused(tmp_path):
    evolve(parse_config(GOOD, "cfg.yaml"), tmp_path / "run", progress=False)
    other = parse_config(GOOD, "cfg.yaml", ["namm.bam_hidden=16", "stages.0.generations=2"])
    with pytest.raises(ValueError, match=r"state.json: field 'n_params': the checkpoint has 4172 parameters"):
        evolve(other, tmp_path / "run", resume=True, progress=False)


def test_init_from_another_parameter_count_is_refused(tmp_path):
    NAMM(NAMMConfig(bam_hidden=16)).save_pretrained(tmp_path / "small")
    config = parse_config(GOOD, "cfg.yaml", [f"init_from={tmp_path / 'small'}"])
    with pytest.raises(ValueError, match="has 2124 parameters but the config's NAMM has 4172"):
        evolve(config, tmp_path / "run", progress=False)


def test_init_from_brings_its_frozen_normalisation(tmp_path):
    from core.namm import NAMM
    from evolve.loop import evolve

    start = NAMM(None, np.full(NAMM.zeros().n_params, 0.01), np.arange(17.0), np.full(17, 4.0))
    start.save_pretrained(tmp_path / "start")
    toy = ("fitness: toy\nseed: 3\npopsize: 4\neval_every: 1\n"
           "stages:\n  - {name: a, tasks: [a], generations: 1, prompts_per_task: 1, prompt_length: 64}\n")
    config = parse_config(toy, "cfg.yaml", [f"init_from={tmp_path / 'start'}"])
    evolve(config, tmp_path / "run", progress=False)
    latest = NAMM.from_pretrained(tmp_path / "run" / "latest")
    assert torch.equal(latest.normaliser.mean, start.normaliser.mean)
    assert torch.equal(latest.normaliser.var, start.normaliser.var)
