"""Load a Decision Transformer checkpoint together with what is needed to run it.

A checkpoint folder holds HF `save_pretrained` files (config.json, model.safetensors) and,
for checkpoints made by zoo.dt.train, `dt_meta.json` with state_mean, state_std, scale,
target_return, env and context length. HF-format DT checkpoints from elsewhere (no
dt_meta.json) load too; pass what they lack (state_mean/state_std, env, target_return) as
keyword arguments, otherwise states are left unnormalised and the env's usual target from the
HF example is used.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import DecisionTransformerModel

from core.atomic import write_folder_atomic
from core.checkpoint_checks import check_config_numbers, check_loading_info, check_tensors_finite
from core.errors import MissingFileError, read_json_object

from .envs import canonical_env

META_FILE = "dt_meta.json"
DEFAULT_SCALE = 1000.0
DEFAULT_CONTEXT = 20
# Target returns of the HF Decision Transformer example / DT paper.
DEFAULT_TARGETS = {"hopper": 3600.0, "walker2d": 5000.0, "halfcheetah": 12000.0, "ant": 6000.0}


@dataclass
class DTBundle:
    model: DecisionTransformerModel
    state_mean: np.ndarray
    state_std: np.ndarray
    scale: float = DEFAULT_SCALE
    target_return: float | None = None
    env: str | None = None
    context: int = DEFAULT_CONTEXT
    meta: dict = field(default_factory=dict)

    @property
    def state_dim(self) -> int:
        return self.model.config.state_dim

    @property
    def act_dim(self) -> int:
        return self.model.config.act_dim

    @property
    def max_ep_len(self) -> int:
        return self.model.config.max_ep_len


def _json_object(path: Path) -> dict:
    """A JSON object from `path`, or a UserError naming the file."""
    return read_json_object(path)


def _weights_checked(path: Path) -> DecisionTransformerModel:
    """The model, refused when its weights file holds tensors the model does not have, lacks some (they
    would be left at random values) or holds a NaN or inf."""
    model, info = DecisionTransformerModel.from_pretrained(path, output_loading_info=True)
    weights = path / "model.safetensors" if (path / "model.safetensors").is_file() else path
    check_loading_info(info, weights, "a Decision Transformer")
    check_tensors_finite(model.state_dict(), weights)
    return model


def load_dt(path, device: str | torch.device = "cpu", **overrides) -> DTBundle:
    """Load a DT folder; keyword overrides (state_mean, state_std, scale, target_return, env,
    context) win over dt_meta.json."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise MissingFileError(f"{path / 'config.json'}: not a Decision Transformer checkpoint folder")
    check_config_numbers(_json_object(path / "config.json"), path / "config.json")
    meta = {}
    if (path / META_FILE).is_file():
        meta = _json_object(path / META_FILE)
        check_config_numbers(meta, path / META_FILE)
    model = _weights_checked(path).to(device).eval()
    meta.update({k: v for k, v in overrides.items() if v is not None})
    sd = model.config.state_dim
    if "state_mean" not in meta or "state_std" not in meta:
        warnings.warn(f"{path}: no state_mean/state_std ({META_FILE} missing or incomplete); "
                      "states are fed unnormalised")
    mean = np.asarray(meta.get("state_mean", np.zeros(sd)), dtype=np.float32).reshape(sd)
    std = np.asarray(meta.get("state_std", np.ones(sd)), dtype=np.float32).reshape(sd)
    env = canonical_env(meta["env"]) if meta.get("env") else None
    target = meta.get("target_return")
    if target is None and env is not None:
        target = DEFAULT_TARGETS[env]
    return DTBundle(model=model, state_mean=mean, state_std=std,
                    scale=float(meta.get("scale", DEFAULT_SCALE)),
                    target_return=None if target is None else float(target), env=env,
                    context=int(meta.get("context", DEFAULT_CONTEXT)), meta=meta)


def save_dt(model: DecisionTransformerModel, path, meta: dict) -> Path:
    """save_pretrained (safetensors) + dt_meta.json, swapped into place as a whole folder."""
    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    return write_folder_atomic(path, fill)


