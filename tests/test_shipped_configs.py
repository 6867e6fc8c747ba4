"""The shipped evolution presets equal the configs that made the shipped checkpoint, field by field.

An evolution run writes its whole config to `<run>/config.yaml`; checkpoints/namm-smollm2/evolution/ keeps
phase 2's and evolution/phase1/ phase 1's. Running a preset must repeat that run, so every field is compared.
"""
from dataclasses import asdict
from pathlib import Path

import pytest

from core.namm import NAMM
from evolve.config import load_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "namm-smollm2"

PAIRS = [
    ("configs/evolve_smollm2_cpu.yaml", SHIPPED / "evolution" / "phase1" / "config.yaml"),
    ("configs/evolve_smollm2_cpu_phase2.yaml", SHIPPED / "evolution" / "config.yaml"),
]
# Fields allowed to differ, with why: none. `threads` (1, one per process under torchrun on 2 cores) and
# `device` (cpu) would legitimately differ on another machine, but the presets are the CPU run's own
# settings, so they are compared too. The generation counts are the planned ones the runs were started
# with (24 and 14); the runs stopped after 12 and 8, which the presets' headers say how to repeat.
MAY_DIFFER: set[str] = set()


def _fields(path) -> dict:
    return asdict(load_config(REPO / path))


@pytest.mark.parametrize("preset, stored", PAIRS, ids=["phase1", "phase2"])
def test_preset_equals_the_config_that_made_the_checkpoint(monkeypatch, preset, stored):
    monkeypatch.chdir(REPO)  # init_from paths are relative to the repository
    ours, theirs = _fields(preset), _fields(stored)
    assert set(ours) == set(theirs)
    differ = {key: (ours[key], theirs[key]) for key in ours if ours[key] != theirs[key] and key not in MAY_DIFFER}
    assert differ == {}, f"{preset} differs from {stored.relative_to(REPO)}: {differ}"


def test_the_stopped_runs_match_what_the_headers_say():
    """The runs stopped early: phase 1 after 12 generations, phase 2 after 8 (its best mean, generation 7,
    is shipped); the presets' headers give those counts as overrides."""
    for (preset, stored), ran in zip(PAIRS, (12, 8)):
        log = (stored.parent / "log.jsonl").read_text().splitlines()
        assert len(log) == ran
        assert f"stages.0.generations={ran}" in (REPO / preset).read_text()
    assert '"generation": 7' in (SHIPPED / "evolution" / "best.json").read_text()


def test_phase2_starts_from_phase1s_final_mean_shipped_beside_it(monkeypatch):
    monkeypatch.chdir(REPO)
    phase2 = load_config("configs/evolve_smollm2_cpu_phase2.yaml")
    start = NAMM.from_pretrained(phase2.init_from)
    assert Path(phase2.init_from).resolve() == (SHIPPED / "evolution" / "phase1" / "mean-gen11").resolve()
    assert start.n_params == NAMM.from_pretrained(SHIPPED).n_params


def test_the_max_received_preset_is_the_namm_x_preset_plus_that_column():
    ours = _fields("configs/evolve_namm_x_max_received_smollm2_cpu.yaml")
    base = _fields("configs/evolve_namm_x_smollm2_cpu.yaml")
    assert ours["namm"] == dict(base["namm"], max_received=True)
    assert {k: v for k, v in ours.items() if k != "namm"} == {k: v for k, v in base.items() if k != "namm"}
