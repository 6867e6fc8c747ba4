"""NAMM: spectrogram + age features, the BAM scorer and threshold selection, as one policy.

Defaults follow the reference implementation (see NAMM_SPEC.md). A checkpoint is a folder with
`config.json` and `model.safetensors` (the flat parameter vector and the frozen normalisation
statistics): a few kilobytes, no pickle.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from core.atomic import write_bytes_atomic, write_json_atomic
from core.bam import BAMShape, bam_scores
from core.checkpoint_checks import NAMM_TENSORS, check_config_numbers, check_non_negative, check_tensors
from core.destination import check_folder_target
from core.errors import MissingFileError, UserError, read_json_object
from core.features import FeatureNormaliser, age_embedding
from core.memory import LayerMemory
from core.policies.base import MemoryPolicy, Schedule
from core.selection import threshold_min_over_heads
from core.spectrogram import EMA, StreamingSpectrogram

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SCHEDULE_FIELDS = ("n_up", "update_at_prompt_end")


@dataclass
class NAMMConfig:
    n_up: int = 512
    n_fft: int = 32
    hop: int = 16
    gamma: float = 0.99
    age_dims: int = 8
    age_base: float = 50000.0
    bam_hidden: int = 32
    threshold: float = 0.0
    norm_eps: float = 1e-7
    update_at_prompt_end: bool = False  # not in the reference: also score the prompt's tail

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_features(self) -> int:
        return self.age_dims + self.n_freq

    @property
    def bam(self) -> BAMShape:
        return BAMShape(self.n_features, self.bam_hidden)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "NAMMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"model_type", "n_params"})
        if unknown:
            raise ValueError(f"{source}: unknown NAMM config field(s) {unknown}")
        return cls(**{k: v for k, v in data.items() if k in known})


def _same_kind(value, default) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class NAMM(MemoryPolicy):
    name = "namm"
    observes = True

    def __init__(self, config: NAMMConfig | None = None, params=None, norm_mean=None, norm_var=None) -> None:
        self.config = config or NAMMConfig()
        super().__init__(schedule=Schedule(self.config.n_up, self.config.update_at_prompt_end))
        self.fixed_schedule: dict = {}  # the fields of SCHEDULE_FIELDS its checkpoint's config.json sets
        shape = self.config.bam
        self.params = torch.zeros(shape.n_params) if params is None else torch.as_tensor(
            np.asarray(params, dtype=np.float32)).flatten()
        shape.unflatten(self.params)  # validates the count
        self.spectrogram = StreamingSpectrogram(self.config.n_fft, self.config.hop, self.config.gamma)
        self.normaliser = FeatureNormaliser(self.config.n_freq, self.config.norm_eps)
        if norm_mean is not None:
            self.normaliser.mean = torch.as_tensor(np.asarray(norm_mean, dtype=np.float32))
        if norm_var is not None:
            self.normaliser.var = torch.as_tensor(np.asarray(norm_var, dtype=np.float32))
        self._unflat_cache: tuple | None = None

    @classmethod
    def zeros(cls, config: NAMMConfig | None = None) -> "NAMM":
        """The all-zero NAMM: scores every token 0, so it never evicts."""
        return cls(config)

    @property
    def n_params(self) -> int:
        return self.params.numel()

    def set_params(self, flat) -> None:
        flat = torch.as_tensor(np.asarray(flat, dtype=np.float32)).flatten()
        self.config.bam.unflatten(flat)
        self.params = flat

    def _bam_params(self, device) -> dict[str, torch.Tensor]:
        key = (self.params.data_ptr(), self.params._version, str(device))
        if self._unflat_cache is None or self._unflat_cache[0] != key:
            self._unflat_cache = (key, self.config.bam.unflatten(self.params.to(device)))
        return self._unflat_cache[1]

    def use_schedule(self, schedule: Schedule) -> None:
        """Update on `schedule`, the object shared with the policies this NAMM is compared to. A field its
        checkpoint sets binds: a schedule that contradicts it is refused."""
        wanted = {"n_up": schedule.n_up, "update_at_prompt_end": schedule.at_prompt_end}
        for field, value in self.fixed_schedule.items():
            if wanted[field] != value:
                raise ValueError(f"the NAMM's checkpoint sets {field} {value}; the schedule asks for {wanted[field]}")
        self.config.n_up, self.config.update_at_prompt_end = schedule.n_up, schedule.at_prompt_end
        self.schedule = schedule

    # --- the policy interface ---
    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        b, h = probs.shape[:2]
        self.spectrogram.init_state(mem.state, b, h, mem.observed, probs.device)
        self.spectrogram.observe(mem.state, probs)

    def features(self, mem: LayerMemory) -> torch.Tensor:
        """[B, H, P, n_features] = [age embedding | normalised spectrogram EMA]."""
        positions = mem.observed_positions()
        ages = positions[..., -1:] - positions
        spec = mem.state[EMA]
        if self.normaliser.calibrating:
            self.normaliser.accumulate(spec)
        emb = age_embedding(ages, self.config.age_dims, self.config.age_base).to(spec.dtype)
        return torch.cat([emb, self.normaliser(spec)], dim=-1)

    def scores(self, mem: LayerMemory) -> torch.Tensor:
        feats = self.features(mem)
        b, h, p, d = feats.shape
        flat = bam_scores(feats.reshape(b * h, p, d).float(), self._bam_params(feats.device), self.config.bam_hidden)
        return flat.view(b, h, p)

    def select(self, mem: LayerMemory) -> torch.Tensor | None:
        if EMA not in mem.state:
            return None
        keep = threshold_min_over_heads(self.scores(mem), self.config.threshold)
        return None if keep.shape[-1] == mem.observed else keep

    # --- calibration of the frozen normalisation ---
    def start_calibration(self) -> None:
        self.normaliser.start_calibration()

    def finish_calibration(self) -> int:
        return self.normaliser.finish_calibration()

    # --- persistence ---
    def save_pretrained(self, folder) -> None:
        from safetensors.torch import save

        folder = check_folder_target(folder, "NAMM checkpoint folder")
        folder.mkdir(parents=True, exist_ok=True)
        config = {"model_type": "namm", **asdict(self.config), "n_params": self.n_params}
        tensors = {"params": self.params.contiguous(), "norm_mean": self.normaliser.mean.contiguous(),
                   "norm_var": self.normaliser.var.contiguous()}
        write_bytes_atomic(folder / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
        write_json_atomic(folder / CONFIG_FILE, config)

    @classmethod
    def from_pretrained(cls, folder) -> "NAMM":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        if not folder.is_dir():
            raise MissingFileError(f"NAMM checkpoint folder {folder} does not exist")
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise MissingFileError(f"NAMM checkpoint {folder} has no {name}")
        config_path = folder / CONFIG_FILE
        data = read_json_object(config_path, "a JSON object of NAMM config fields")
        check_config_numbers(data, config_path)
        if data.get("model_type", "namm") != "namm":
            raise UserError(f"{config_path}: model_type is {data.get('model_type')!r}, expected 'namm'")
        for f in fields(NAMMConfig):
            if f.name in data and not _same_kind(data[f.name], getattr(NAMMConfig, f.name)):
                raise UserError(f"{config_path}: field '{f.name}' must be {type(getattr(NAMMConfig, f.name)).__name__}, "
                                f"got {data[f.name]!r}")
        try:
            config = NAMMConfig.from_dict(data, str(config_path))
        except TypeError as err:
            raise UserError(f"{config_path}: {err}") from None
        except ValueError as err:
            raise UserError(str(err)) from None
        try:
            expected = config.bam.n_params
        except (TypeError, ValueError) as err:
            raise UserError(f"{config_path}: the fields do not describe a NAMM ({err})") from None
        if "n_params" in data and data["n_params"] != expected:
            raise UserError(f"{config_path}: field 'n_params' is {data['n_params']!r}, but the other fields describe "
                            f"a NAMM with {expected} parameters")
        try:
            tensors = load_file(folder / WEIGHTS_FILE)
        except SafetensorError as err:
            raise UserError(f"{folder / WEIGHTS_FILE}: not a readable safetensors file ({err})") from None
        check_tensors(tensors, folder / WEIGHTS_FILE, NAMM_TENSORS)
        check_non_negative(tensors, folder / WEIGHTS_FILE, ["norm_var"])
        for key in ("params", "norm_mean", "norm_var"):
            if key not in tensors:
                raise UserError(f"{folder / WEIGHTS_FILE}: missing tensor {key!r}")
        if tensors["params"].numel() != expected:
            raise UserError(f"{folder / WEIGHTS_FILE}: 'params' has {tensors['params'].numel()} values, but the "
                            f"config describes a NAMM with {expected} parameters")
        for key in ("norm_mean", "norm_var"):
            if tensors[key].numel() != config.n_freq:
                raise UserError(f"{folder / WEIGHTS_FILE}: {key!r} has {tensors[key].numel()} values, "
                                f"expected {config.n_freq}")
        namm = cls(config, tensors["params"], tensors["norm_mean"], tensors["norm_var"])
        namm.fixed_schedule = {field: data[field] for field in SCHEDULE_FIELDS if field in data}
        return namm

    @classmethod
    def from_flat(cls, vector, config: NAMMConfig | None = None, norm_mean=None, norm_var=None) -> "NAMM":
        """From a parameter vector in the reference layout (array, or a .npy file)."""
        if isinstance(vector, (str, os.PathLike)):
            path = Path(vector)
            if not path.is_file():
                raise FileNotFoundError(f"parameter file {path} does not exist")
            vector = np.load(path)
        return cls(config, vector, norm_mean, norm_var)

    def __repr__(self) -> str:
        return f"NAMM(n_params={self.n_params}, n_up={self.n_up}, nonzero={bool(self.params.abs().sum() > 0)})"

