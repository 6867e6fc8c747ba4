"""Commands that write a model folder never overwrite one unasked, and Ctrl-C ends any command with one line.

Each case runs a command line as a user would (`python -m ...`, in a scratch working folder) and checks:
the exit status (2 for a refused input, 130 for Ctrl-C, 0 for a forced --overwrite), exactly one line on
stderr naming the folder, no traceback, no file changed anywhere but the output folder (the scratch folder,
the evolution run it reads and the shipped checkpoints are hashed before and after), and the shipped
checkpoints byte-identical at the end of the module. Refusals happen before any data or model loads.

Ctrl-C: the command runs with one of its working steps replaced by a wait that prints "ready" on stdout
(tests/fixtures is not needed: the patch is applied by a small launcher given on the command line), and
SIGINT is sent once the line is read, so the signal always lands while the command is working.
"""
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

from tests.test_evolve_export import TOY  # the same toy run

CHECKPOINTS = REPO / "checkpoints"


def digest(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (folders as '<dir>'), so additions, removals and edits show."""
    out = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def env_for(cwd: Path) -> dict:
    return {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture(scope="module", autouse=True)
def shipped_checkpoints_unchanged():
    before = digest(CHECKPOINTS)
    yield
    assert digest(CHECKPOINTS) == before, "a shipped checkpoint changed"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished toy evolution run (seconds, no model): what evolve.export reads."""
    from evolve.config import parse_config
    from evolve.loop import evolve

    folder = tmp_path_factory.mktemp("evolution") / "run"
    evolve(parse_config(TOY, "toy.yaml"), folder, progress=False)
    return folder


@pytest.fixture
def sandbox(tmp_path):
    """The working folder of one command: a copy of a shipped NAMM with a model card and a transfer report (as
    the shipped one has), shipped DT and video folders at their default relative paths, a file, a non-empty
    folder, an empty benchmark split and a toy evolution config."""
    shutil.copytree(CHECKPOINTS / "namm-smollm2", tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "README.md").is_file() and (tmp_path / "ckpt" / "transfer").is_dir()
    shutil.copytree(CHECKPOINTS / "dt-hopper", tmp_path / "checkpoints" / "dt-hopper")
    (tmp_path / "checkpoints" / "llava-video-tiny").mkdir()
    (tmp_path / "checkpoints" / "llava-video-tiny" / "README.md").write_text("a model card\n")
    (tmp_path / "file.txt").write_text("not a folder\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.md").write_text("someone's notes\n")
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
    (tmp_path / "toy.yaml").write_text(TOY)
    return tmp_path


def check_one_line(done, status: int, words: str) -> str:
    assert done.returncode == status, f"status {done.returncode}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr[-3000:]
    return lines[0]


# (case, argv with {sb} = the working folder, {run} = the toy run, {repo} = the repository; words of the line)
REFUSED = [
    ("export onto a checkpoint", ["evolve.export", "{run}", "{sb}/ckpt"],
     "ckpt: the destination checkpoint folder is not empty; pass --overwrite"),
    ("export onto the shipped NAMM", ["evolve.export", "{run}", "{repo}/checkpoints/namm-smollm2", "--which", "latest"],
     "checkpoints/namm-smollm2: the destination checkpoint folder is not empty; pass --overwrite"),
    ("export onto a file", ["evolve.export", "{run}", "{sb}/file.txt", "--overwrite"],
     "file.txt: the destination checkpoint folder is a file"),
    ("distill onto the shipped NAMM", ["evolve.distill", "--config", "{repo}/configs/evolve_smollm2_cpu.yaml",
                                       "--teacher", "tova", "--budget", "0.4", "--out", "{repo}/checkpoints/namm-smollm2"],
     "checkpoints/namm-smollm2: the --out folder is not empty; pass --overwrite"),
    ("distill onto a file", ["evolve.distill", "--config", "{repo}/configs/evolve_smollm2_cpu.yaml",
                             "--teacher", "h2o", "--out", "{sb}/file.txt"], "file.txt: the --out folder is a file"),
    ("distill onto a folder with notes", ["evolve.distill", "--config", "{repo}/configs/evolve_smollm2_cpu.yaml",
                                          "--teacher", "h2o", "--out", "{sb}/full"],
     "full: the --out folder is not empty; pass --overwrite"),
    ("dt.train onto its default, a DT", ["zoo.dt.train", "--env", "hopper"],
     "checkpoints/dt-hopper: the --out folder is not empty; pass --overwrite"),
    ("dt.train onto the shipped DT", ["zoo.dt.train", "--env", "walker2d", "--out", "{repo}/checkpoints/dt-walker2d"],
     "checkpoints/dt-walker2d: the --out folder is not empty; pass --overwrite"),
    ("video.train onto its default", ["zoo.video.train", "--data", "{sb}/data"],
     "checkpoints/llava-video-tiny: the --out folder is not empty; pass --overwrite"),
    ("video.rebuild onto the shipped model", ["zoo.video.rebuild", "--data", "{sb}/data", "--work", "{sb}/work",
                                              "--out", "{repo}/checkpoints/llava-video-tiny"],
     "checkpoints/llava-video-tiny: the --out folder is not empty; pass --overwrite"),
    ("build_smol onto the shipped model", ["zoo.video.build_smol", "--work", "{sb}/work",
                                           "--out", "{repo}/checkpoints/llava-video-smollm2"],
     "checkpoints/llava-video-smollm2: the --out folder is not empty; pass --overwrite"),
    ("vision_stage onto a folder with notes", ["zoo.video.vision_stage", "--out", "{sb}/full", "--steps", "1"],
     "full: the --out folder is not empty; pass --overwrite"),
    ("lm_stage onto a folder that is no stage", ["zoo.video.lm_stage", "--out", "{sb}/full", "--steps", "1"],
     "full: the --out folder is not empty; pass --overwrite"),
    ("lm_stage copy onto the shipped model", ["zoo.video.lm_stage", "--out", "{sb}/work",
                                              "--copy-to", "{repo}/checkpoints/llava-video-smollm2"],
     "checkpoints/llava-video-smollm2: the --copy-to folder is not empty; pass --overwrite"),
    ("evolve.run into a checkpoint", ["evolve.run", "--config", "{sb}/toy.yaml", "--out", "{sb}/ckpt", "--no-progress"],
     "ckpt: the --out folder is not empty; it is not an evolution run folder; choose another --out"),
    ("evolve.run onto a file", ["evolve.run", "--config", "{sb}/toy.yaml", "--out", "{sb}/file.txt"],
     "file.txt: is a file, not a folder"),  # eval.inputs.output_folder's words: checked before the config is read
]


def fill(argv, sb, run_dir):
    return [a.format(sb=sb, run=run_dir, repo=REPO) for a in argv]


@pytest.mark.parametrize("case, argv, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_destination_that_holds_something_is_refused_and_nothing_changes(sandbox, run_dir, case, argv, words):
    before = (digest(sandbox), digest(run_dir), digest(CHECKPOINTS))
    done = subprocess.run([sys.executable, "-m", *fill(argv, sandbox, run_dir)], cwd=sandbox, capture_output=True,
                          text=True, timeout=300, env=env_for(sandbox))
    line = check_one_line(done, 2, words)
    assert line.startswith("error: ")
    assert (digest(sandbox), digest(run_dir), digest(CHECKPOINTS)) == before


def test_overwrite_replaces_the_checkpoint_whole(sandbox, run_dir):
    before = digest(sandbox)
    done = subprocess.run([sys.executable, "-m", "evolve.export", str(run_dir), str(sandbox / "ckpt"), "--overwrite"],
                          cwd=sandbox, capture_output=True, text=True, timeout=300, env=env_for(sandbox))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert sorted(p.name for p in (sandbox / "ckpt").iterdir()) == ["config.json", "evolution", "model.safetensors"]
    assert sorted((sandbox / "ckpt" / "evolution").iterdir()) == sorted(
        sandbox / "ckpt" / "evolution" / p.name for p in run_dir.iterdir()
        if p.name in ("config.yaml", "log.jsonl", "fitness.png", "cache_fraction.png", "best.json"))
    after = digest(sandbox)
    outside = lambda d: {k: v for k, v in d.items() if not k.startswith("ckpt")}  # noqa: E731
    assert outside(after) == outside(before)  # nothing beside the folder: no staging or retired copy left


# Ctrl-C: (case, module, "module.attribute" replaced by the wait, argv, words of the line)
INTERRUPTED = [
    ("evolve.run", "evolve.run", "evolve.loop.evolve", ["--config", "{sb}/toy.yaml", "--out", "{sb}/evo"],
     "evo holds the run up to its last finished generation; add --resume"),
    ("eval.lm", "eval.lm", "eval.lm.run.run_policies", ["--tasks", "passkey", "--policies", "full", "--out-dir", "{sb}/lm"],
     "the predictions made so far are in"),
    ("eval.rl", "eval.rl", "eval.rl.dt_model.load_dt", ["--policies", "full", "--out-dir", "{sb}/rl"],
     "each finished policy's result is in"),
    ("evolve.export", "evolve.export", "core.namm.NAMM.from_pretrained", ["{run}", "{sb}/new"],
     "nothing was written to"),
    ("evolve.distill", "evolve.distill", "evolve.lm_fitness.LMFitness",
     ["--config", "{repo}/configs/evolve_smollm2_cpu.yaml", "--teacher", "h2o", "--out", "{sb}/new"],
     "nothing was written to"),
    ("eval.demo (generic line)", "eval.demo", "adapters.loading.load_model", ["--n", "1"],
     "stopped before the end"),
]

LAUNCHER = textwrap.dedent("""
    import importlib, runpy, sys, time
    module, target = sys.argv[1], sys.argv[2]
    owner_name, attr = target.rsplit(".", 1)
    try:
        owner = importlib.import_module(owner_name)
    except ModuleNotFoundError:  # a class attribute: module.Class.method
        module_name, cls = owner_name.rsplit(".", 1)
        owner = getattr(importlib.import_module(module_name), cls)
    def wait(*args, **kwargs):
        print("ready", flush=True)
        for _ in range(2400):  # short sleeps: a SIGINT that a library's thread received is seen within 0.05 s
            time.sleep(0.05)
    setattr(owner, attr, wait)
    sys.argv = [module] + sys.argv[3:]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
""")


@pytest.mark.parametrize("case, module, target, argv, words", INTERRUPTED, ids=[c[0] for c in INTERRUPTED])
def test_ctrl_c_is_one_line_with_status_130(sandbox, run_dir, case, module, target, argv, words):
    before = (digest(run_dir), digest(CHECKPOINTS))
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, module, target, *fill(argv, sandbox, run_dir)],
                            cwd=sandbox, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_for(sandbox))
    try:
        for line in proc.stdout:  # what the command prints before its working step, then "ready"
            if line.strip() == "ready":
                break
        else:
            pytest.fail(f"the command ended before it was working: {proc.wait()} {proc.stderr.read()[-3000:]}")
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    line = check_one_line(done, 130, words)
    assert line.startswith("interrupted: ")
    assert (digest(run_dir), digest(CHECKPOINTS)) == before
    assert not (sandbox / "new").exists()


def test_a_nested_command_leaves_ctrl_c_to_the_outer_one(capsys):
    from core.errors import cli_main, on_interrupt

    def inner(argv):
        on_interrupt("inner note")
        raise KeyboardInterrupt

    def outer(argv):
        on_interrupt("outer note")
        return cli_main(inner, [])

    assert cli_main(outer, []) == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted: outer note"]
