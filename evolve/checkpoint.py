"""The run folder and its per-generation checkpoint.

    config.yaml              the resolved config of the run
    latest/                  the current mean as a NAMM (NAMM.save_pretrained: config.json + model.safetensors)
    optimizer-GGGGGG.safetensors  CMA-ES state after generation GGGGGG (no pickle, see evolve/optimizer.py;
                             runs begun by older versions keep `optimizer-GGGGGG.pkl`, loaded only with
                             --trust-run-dir)
    state.json               the commit point: next generation, which optimiser file (+ sha256), RNG states,
                             the best held-out result
    log.jsonl                one line per generation; fitness.png, cache_fraction.png
    best/ + best.json        the mean with the best held-out fitness in the current stage
    fullcache/               cached full-cache scores per prompt set (the fitness denominators)

Every file is written atomically and state.json last, so a run killed at any moment resumes from the
last completed generation; optimiser files of older generations are removed after the commit.
"""
from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.namm import NAMM
from core.atomic import write_bytes_atomic, write_json_atomic
from core.errors import MissingFileError, UserError, read_json_object
from evolve.optimizer import CMAES

STATE_FILE = "state.json"
STATE_FORMAT = "namm-x/evolve-state/1"
LATEST = "latest"
BEST = "best"


@dataclass
class RunState:
    next_generation: int = 0
    best: dict = field(default_factory=dict)  # {"fitness", "generation", "stage"} within the current stage


OPTIMIZER_FILE = re.compile(r"^optimizer-(\d{6,})\.(safetensors|pkl)$")


def optimizer_name(generation: int, suffix: str = ".safetensors") -> str:
    return f"optimizer-{generation:06d}{suffix}"


def save_checkpoint(run_dir: Path, optimizer: CMAES, template: NAMM, state: RunState) -> None:
    """Write latest/ and the optimiser state, then commit with state.json (rank 0 only)."""
    run_dir = Path(run_dir)
    latest = NAMM(template.config, optimizer.mean.astype(np.float32), template.normaliser.mean,
                  template.normaliser.var)
    latest.save_pretrained(run_dir / LATEST)
    blob = optimizer.state_bytes()
    name = optimizer_name(state.next_generation - 1, optimizer.file_suffix)
    write_bytes_atomic(run_dir / name, blob)
    write_json_atomic(run_dir / STATE_FILE, {
        "format": STATE_FORMAT,
        "next_generation": state.next_generation,
        "optimizer_file": name,
        "optimizer_sha256": hashlib.sha256(blob).hexdigest(),
        "n_params": optimizer.dim,
        "popsize": optimizer.popsize,
        "sigma": optimizer.sigma,
        "best": state.best,
        "numpy_global_rng": _numpy_state(),
        "torch_rng": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
    })
    for old in run_dir.glob("optimizer-*"):
        if old.name != name and OPTIMIZER_FILE.match(old.name):
            old.unlink(missing_ok=True)


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_FILE).is_file()


def _field(data: dict, key: str, kind, path: Path, minimum: int | None = None):
    if key not in data:
        raise UserError(f"{path}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UserError(f"{path}: field '{key}' has type {type(value).__name__}, expected {kind.__name__}")
    if minimum is not None and value < minimum:
        raise UserError(f"{path}: field '{key}' is {value}, must be at least {minimum}")
    return value


def load_checkpoint(run_dir: Path, expected_params: int, expected_popsize: int,
                    trust_run_dir: bool = False) -> tuple[CMAES, NAMM, RunState]:
    """Optimiser, the latest NAMM (for its frozen normalisation) and the counters; restores RNG states.

    An optimiser state in the older pickle format is loaded only with `trust_run_dir` (unpickling runs
    code from the file). Every field of state.json is checked before anything is loaded."""
    run_dir = Path(run_dir)
    path = run_dir / STATE_FILE
    try:
        data = read_json_object(path)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no checkpoint to resume from") from None
    if data.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: field 'format' is {data.get('format')!r}, expected {STATE_FORMAT!r}")
    if data.get("n_params") != expected_params:
        raise UserError(f"{path}: field 'n_params': the checkpoint has {data.get('n_params')} parameters but the "
                        f"config's NAMM has {expected_params}; resume with the same 'namm' settings")
    if data.get("popsize") != expected_popsize:
        raise UserError(f"{path}: field 'popsize': the checkpoint has population {data.get('popsize')} but the "
                        f"config asks for {expected_popsize}")
    next_generation = _field(data, "next_generation", int, path, minimum=1)
    name = _field(data, "optimizer_file", str, path)
    match = OPTIMIZER_FILE.match(name)
    if not match or int(match.group(1)) != next_generation - 1:
        raise UserError(f"{path}: field 'optimizer_file' is {name!r}, expected "
                        f"optimizer-{next_generation - 1:06d}.safetensors (or .pkl) for next_generation "
                        f"{next_generation}")
    sha = _field(data, "optimizer_sha256", str, path)
    best = data.get("best") or {}
    if not isinstance(best, dict):
        raise UserError(f"{path}: field 'best' has type {type(best).__name__}, expected an object")
    numpy_rng = _field(data, "numpy_global_rng", dict, path)
    for key in ("name", "keys", "pos", "has_gauss", "cached"):
        if key not in numpy_rng:
            raise UserError(f"{path}: missing field 'numpy_global_rng.{key}'")
    torch_rng = _field(data, "torch_rng", str, path)
    opt_path = run_dir / name
    if not opt_path.is_file():
        raise MissingFileError(f"{path}: field 'optimizer_file' names {opt_path}, which does not exist")
    if opt_path.suffix == ".pkl" and not trust_run_dir:
        CMAES.from_file(opt_path, trust_pickle=False)  # raises: names the file and --trust-run-dir
    blob = opt_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != sha:
        raise UserError(f"{opt_path}: contents do not match 'optimizer_sha256' in {path}")
    optimizer = CMAES.from_file(opt_path, trust_pickle=trust_run_dir)
    if optimizer.dim != expected_params:
        raise UserError(f"{opt_path}: optimiser state has {optimizer.dim} parameters, expected {expected_params}")
    if optimizer.iterations != next_generation:
        raise UserError(f"{opt_path}: the optimiser has done {optimizer.iterations} generations, but {path} field "
                        f"'next_generation' is {next_generation}")
    latest = NAMM.from_pretrained(run_dir / LATEST)
    if latest.n_params != expected_params:
        raise UserError(f"{run_dir / LATEST}: NAMM has {latest.n_params} parameters, expected {expected_params}")
    try:
        _restore_numpy(numpy_rng)
        torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(torch_rng), dtype=np.uint8).copy()))
    except (ValueError, TypeError, RuntimeError) as err:
        raise UserError(f"{path}: fields 'numpy_global_rng' / 'torch_rng' are not random states ({err})") from None
    return optimizer, latest, RunState(next_generation, dict(best))


def save_best(run_dir: Path, namm: NAMM, record: dict) -> None:
    namm.save_pretrained(Path(run_dir) / BEST)
    write_json_atomic(Path(run_dir) / "best.json", record)


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _restore_numpy(data: dict) -> None:
    np.random.set_state((data["name"], np.asarray(data["keys"], dtype=np.uint32), data["pos"], data["has_gauss"],
                         data["cached"]))
