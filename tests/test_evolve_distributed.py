"""World size 1 and 2 (two CPU processes, gloo, launched with torchrun) end with the same mean."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from evolve.checkpoint import STATE_FILE
from evolve.config import parse_config
from evolve.loop import evolve
from evolve.optimizer import CMAES

REPO = Path(__file__).resolve().parents[1]

TOY = """
fitness: toy
toy_target: 0.5
seed: 7
popsize: 5
eval_every: 2
stages:
  - {name: one, tasks: [a], generations: 2, prompts_per_task: 1, prompt_length: 64}
  - {name: two, tasks: [a, b], generations: 2, prompts_per_task: 1, prompt_length: 64}
"""


def test_world_size_one_and_two_agree(tmp_path):
    single = evolve(parse_config(TOY, "toy.yaml"), tmp_path / "single", progress=False)
    config_file = tmp_path / "toy.yaml"
    config_file.write_text(TOY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "evolve.run", "--config", str(config_file), "--out", str(tmp_path / "two"), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    state = json.loads((tmp_path / "two" / STATE_FILE).read_text())
    assert state["next_generation"] == 4
    two = CMAES.from_file(tmp_path / "two" / state["optimizer_file"])
    assert np.array_equal(single.mean, two.mean)
    assert single.sigma == two.sigma
    rows = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    single_rows = [json.loads(line) for line in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    assert [r["fitness_max"] for r in rows] == [r["fitness_max"] for r in single_rows]
