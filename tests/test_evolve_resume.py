"""A killed run resumes exactly: same final mean as an uninterrupted run (toy fitness, no model)."""
import json

import numpy as np
import pytest

import evolve.loop as loop
from core.namm import NAMM
from evolve.config import parse_config
from evolve.loop import evolve

TOY = """
fitness: toy
toy_target: 0.05
seed: 3
popsize: 6
eval_every: 2
stages:
  - {name: one, tasks: [a], generations: 3, prompts_per_task: 1, prompt_length: 64}
  - {name: two, tasks: [a, b], generations: 3, prompts_per_task: 1, prompt_length: 64}
"""


class Killed(Exception):
    pass


def _config():
    return parse_config(TOY, "toy.yaml")


def test_killed_after_generation_resumes_exactly(tmp_path):
    full = evolve(_config(), tmp_path / "full", progress=False)

    def kill_after(g, _optimizer):
        if g == 3:  # generation 3 is committed, then the process "dies"
            raise Killed()

    with pytest.raises(Killed):
        evolve(_config(), tmp_path / "killed", progress=False, on_generation=kill_after)
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["next_generation"] == 4
    resumed = evolve(_config(), tmp_path / "killed", resume=True, progress=False)
    assert np.array_equal(full.mean, resumed.mean)
    assert full.sigma == resumed.sigma
    rows = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == list(range(6))
    saved = NAMM.from_pretrained(tmp_path / "killed" / "latest")
    assert np.array_equal(saved.params.numpy(), full.mean.astype(np.float32))
    assert (tmp_path / "killed" / "best").is_dir() and (tmp_path / "killed" / "fitness.png").is_file()
    assert [p.name for p in (tmp_path / "killed").glob("optimizer-*")] == ["optimizer-000005.safetensors"]


def test_killed_before_commit_redoes_the_generation(tmp_path, monkeypatch):
    full = evolve(_config(), tmp_path / "full", progress=False)
    real_save = loop.save_checkpoint

    def dying_save(run_dir, optimizer, template, state):
        if state.next_generation == 3:  # the log already holds generation 2, state.json does not
            raise Killed()
        real_save(run_dir, optimizer, template, state)

    monkeypatch.setattr(loop, "save_checkpoint", dying_save)
    with pytest.raises(Killed):
        evolve(_config(), tmp_path / "killed", progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed = evolve(_config(), tmp_path / "killed", resume=True, progress=False)
    assert np.array_equal(full.mean, resumed.mean)
    rows = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == list(range(6))


def test_fresh_run_refuses_an_existing_run_folder(tmp_path):
    evolve(parse_config(TOY.replace("generations: 3", "generations: 1"), "toy.yaml"), tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        evolve(_config(), tmp_path / "r", progress=False)
