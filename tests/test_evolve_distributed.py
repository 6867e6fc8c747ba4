"""One process and several (CPU processes, gloo) end with the same mean: under torchrun, under
accelerate launch, and across two torchrun "nodes" on this machine, where only rank 0 writes and
--resume continues exactly."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evolve.checkpoint import STATE_FILE
from evolve.config import parse_config
from core.errors import UserError
from evolve.distributed import env_rank, env_world_size, init_from_env
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_env(tmp_path) -> dict:
    """No user accelerate config (HF_HOME in tmp), one thread per process, the repository importable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HOME": str(tmp_path / "hf")}


def run_args(config_file, out, *extra) -> list[str]:
    return ["-m", "evolve.run", "--config", str(config_file), "--out", str(out), "--no-progress", *extra]


def check(done):
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def check_one_main(done):
    """One rank 0 among the processes (separate one-process runs would each print their own line)."""
    check(done)
    assert done.stdout.count("done: ") == 1, done.stdout[-2000:]
    return done


def assert_same_run(single_dir, single, other_dir, generations=4):
    state = json.loads((other_dir / STATE_FILE).read_text())
    assert state["next_generation"] == generations
    other = CMAES.from_file(other_dir / state["optimizer_file"])
    assert np.array_equal(single.mean, other.mean)
    assert single.sigma == other.sigma
    rows = [json.loads(line) for line in (other_dir / "log.jsonl").read_text().splitlines()]
    single_rows = [json.loads(line) for line in (single_dir / "log.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == list(range(generations))
    assert [r["fitness_max"] for r in rows] == [r["fitness_max"] for r in single_rows]


@pytest.fixture
def toy(tmp_path):
    """(config file, one-process run folder, its optimiser)."""
    single = evolve(parse_config(TOY, "toy.yaml"), tmp_path / "single", progress=False)
    config_file = tmp_path / "toy.yaml"
    config_file.write_text(TOY)
    return config_file, tmp_path / "single", single


def test_world_size_one_and_two_agree(tmp_path, toy):
    config_file, single_dir, single = toy
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           *run_args(config_file, tmp_path / "two")]
    check_one_main(subprocess.run(cmd, cwd=REPO, env=launcher_env(tmp_path), capture_output=True, text=True,
                                  timeout=120))
    assert_same_run(single_dir, single, tmp_path / "two")


def accelerate(*args) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port()), *args]


def test_accelerate_launch_two_processes_agree_with_one(tmp_path, toy):
    """`--multi_gpu` is accelerate's name for its torchrun launcher: without a GPU the two processes run
    on CPU with gloo."""
    config_file, single_dir, single = toy
    cmd = accelerate("--multi_gpu", "--num_processes", "2", *run_args(config_file, tmp_path / "two"))
    done = check_one_main(subprocess.run(cmd, cwd=REPO, env=launcher_env(tmp_path), capture_output=True, text=True,
                                timeout=120))
    assert "single process" not in done.stderr
    assert_same_run(single_dir, single, tmp_path / "two")


def test_accelerate_cpu_without_mpirun_says_it_runs_one_process(tmp_path, toy):
    config_file, single_dir, single = toy
    cmd = accelerate("--cpu", "--num_processes", "2", *run_args(config_file, tmp_path / "one"))
    done = check(subprocess.run(cmd, cwd=REPO, env=launcher_env(tmp_path), capture_output=True, text=True,
                                timeout=120))
    assert "accelerate launch --cpu started a single process" in done.stderr
    assert_same_run(single_dir, single, tmp_path / "one")


def mpi_hostfile(tmp_path) -> Path:
    version = subprocess.run(["mpirun", "--version"], capture_output=True, text=True).stdout
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=2\n" if "Open MPI" in version else "localhost:2\n")
    return hostfile


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun on PATH (Open MPI, MPICH or Intel MPI)")
def test_accelerate_launch_cpu_through_mpirun_agrees_with_one(tmp_path, toy):
    """accelerate's multi-CPU launch: mpirun starts the processes and sets MPI's rank variables."""
    config_file, single_dir, single = toy
    env = {**launcher_env(tmp_path), "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    cmd = accelerate("--cpu", "--num_processes", "2", "--mpirun_hostfile", str(mpi_hostfile(tmp_path)),
                     *run_args(config_file, tmp_path / "two"))
    done = check_one_main(subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120))
    assert "single process" not in done.stderr
    assert_same_run(single_dir, single, tmp_path / "two")


def test_ranks_are_read_from_mpi_variables(monkeypatch):
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert (env_rank(), env_world_size()) == (0, 1)
    monkeypatch.setenv("PMI_RANK", "3")
    monkeypatch.setenv("PMI_SIZE", "4")
    assert (env_rank(), env_world_size()) == (3, 4)
    monkeypatch.setenv("RANK", "1")
    assert env_rank() == 1
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(UserError, match="world size 4 but MASTER_ADDR / MASTER_PORT are not set"):
        init_from_env()


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def two_nodes(tmp_path, node_dirs, config_file, *extra) -> list[subprocess.CompletedProcess]:
    """Two torchrun agents on this machine, each one node of one process, meeting at one c10d
    rendezvous; each node runs in its own folder with the run folder `run` relative to it, so what a
    node writes stays in its own folder."""
    endpoint = f"127.0.0.1:{free_port()}"
    procs = []
    for node, folder in enumerate(node_dirs):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node-rank", str(node), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "toy",
               *run_args(config_file, "run", *extra)]
        procs.append(subprocess.Popen(cmd, cwd=folder, env=launcher_env(tmp_path), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        done.append(check(subprocess.CompletedProcess(proc.args, proc.returncode, out, err)))
    assert sum(d.stdout.count("done: ") for d in done) == 1, "one rank 0 over both nodes"
    return done


@pytest.mark.slow
def test_two_nodes_agree_with_one_process_and_resume_exactly(tmp_path, toy):
    """Node folders stand for two machines: the node that got rank 0 holds the run folder, the other
    writes nothing. Then the folder is copied to both (as a shared file system would show it), both
    resume for the last generation, and only rank 0's copy changes."""
    config_file, single_dir, single = toy
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    for folder in nodes:
        folder.mkdir()
    two_nodes(tmp_path, nodes, config_file, "stages.1.generations=1")  # 3 of the 4 generations
    written = [folder for folder in nodes if (folder / "run").exists()]
    assert len(written) == 1, "exactly one node (rank 0's) writes the run folder"
    state = json.loads((written[0] / "run" / STATE_FILE).read_text())
    assert state["next_generation"] == 3
    other = [folder for folder in nodes if folder not in written][0]
    shutil.copytree(written[0] / "run", other / "run")
    before = folder_files(nodes[0] / "run")
    assert before == folder_files(nodes[1] / "run")

    two_nodes(tmp_path, nodes, config_file, "--resume", "stages.1.generations=2")
    changed = [folder for folder in nodes if folder_files(folder / "run") != before]
    assert len(changed) == 1, "only rank 0 writes on resume too"
    assert_same_run(single_dir, single, changed[0] / "run")
