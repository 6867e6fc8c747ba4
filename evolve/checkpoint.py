"""The run folder and its per-generation checkpoint.

    config.yaml              the resolved config of the run
    latest/                  the current mean as a NAMM (NAMM.save_pretrained: config.json + model.safetensors)
    optimizer-GGGGGG.pkl     CMA-ES state after generation GGGGGG (`cma`'s pickle, see evolve/optimizer.py)
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
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.namm import NAMM
from core.atomic import write_bytes_atomic, write_json_atomic
from evolve.optimizer import CMAES

STATE_FILE = "state.json"
STATE_FORMAT = "namm-x/evolve-state/1"
LATEST = "latest"
BEST = "best"


@dataclass
class RunState:
    next_generation: int = 0
    best: dict = field(default_factory=dict)  # {"fitness", "generation", "stage"} within the current stage


def optimizer_name(generation: int) -> str:
    return f"optimizer-{generation:06d}.pkl"


def save_checkpoint(run_dir: Path, optimizer: CMAES, template: NAMM, state: RunState) -> None:
    """Write latest/ and the optimiser state, then commit with state.json (rank 0 only)."""
    run_dir = Path(run_dir)
    latest = NAMM(template.config, optimizer.mean.astype(np.float32), template.normaliser.mean,
                  template.normaliser.var)
    latest.save_pretrained(run_dir / LATEST)
    blob = optimizer.to_bytes()
    name = optimizer_name(state.next_generation - 1)
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
    for old in run_dir.glob("optimizer-*.pkl"):
        if old.name != name:
            old.unlink(missing_ok=True)


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / STATE_FILE).is_file()


def load_checkpoint(run_dir: Path, expected_params: int, expected_popsize: int) -> tuple[CMAES, NAMM, RunState]:
    """Optimiser, the latest NAMM (for its frozen normalisation) and the counters; restores RNG states."""
    run_dir = Path(run_dir)
    path = run_dir / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no checkpoint to resume from") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    if data.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: field 'format' is {data.get('format')!r}, expected {STATE_FORMAT!r}")
    if data.get("n_params") != expected_params:
        raise ValueError(f"{path}: field 'n_params': the checkpoint has {data.get('n_params')} parameters but the "
                         f"config's NAMM has {expected_params}; resume with the same 'namm' settings")
    if data.get("popsize") != expected_popsize:
        raise ValueError(f"{path}: field 'popsize': the checkpoint has population {data.get('popsize')} but the "
                         f"config asks for {expected_popsize}")
    opt_path = run_dir / data["optimizer_file"]
    if not opt_path.is_file():
        raise FileNotFoundError(f"{path}: field 'optimizer_file' names {opt_path}, which does not exist")
    blob = opt_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != data.get("optimizer_sha256"):
        raise ValueError(f"{opt_path}: contents do not match 'optimizer_sha256' in {path}")
    optimizer = CMAES.from_file(opt_path)
    if optimizer.dim != expected_params:
        raise ValueError(f"{opt_path}: optimiser state has {optimizer.dim} parameters, expected {expected_params}")
    latest = NAMM.from_pretrained(run_dir / LATEST)
    if latest.n_params != expected_params:
        raise ValueError(f"{run_dir / LATEST}: NAMM has {latest.n_params} parameters, expected {expected_params}")
    _restore_numpy(data["numpy_global_rng"])
    torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(data["torch_rng"]), dtype=np.uint8).copy()))
    return optimizer, latest, RunState(int(data["next_generation"]), dict(data.get("best") or {}))


def save_best(run_dir: Path, namm: NAMM, record: dict) -> None:
    namm.save_pretrained(Path(run_dir) / BEST)
    write_json_atomic(Path(run_dir) / "best.json", record)


def _numpy_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}


def _restore_numpy(data: dict) -> None:
    np.random.set_state((data["name"], np.asarray(data["keys"], dtype=np.uint32), data["pos"], data["has_gauss"],
                         data["cached"]))
