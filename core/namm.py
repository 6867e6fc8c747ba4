"""NAMM: features of each cached token, a scorer, and a selection rule, as one policy.

Two named architectures share this class:
- `features: paper` (the default, the reference implementation, see NAMM_SPEC.md): spectrogram + age
  features under a frozen normalisation, the BAM scorer (4,172 parameters);
- `features: namm_x` (core/namm_x.py): the baselines' own signals plus the spectrogram, ranked within
  the layer at each update, and a small readout (26 parameters when linear), in which every baseline's
  rule is a point.
Two selections: `threshold` (the reference: keep scores >= threshold, min over heads) and `topk` (keep
ceil(budget x processed) tokens of each layer at each update, exactly as the baselines do, newest kept).
`head_mode: shared` scores each layer once (heads averaged) and every head keeps the same tokens;
`per_head` scores each KV head on its own.

A checkpoint is a folder with `config.json` and `model.safetensors` (the flat parameter vector and the
frozen normalisation statistics): a few kilobytes, no pickle.
"""
from __future__ import annotations

import os
import math
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
from core.namm_x import NAMMXFeatures, feature_names, readout_scores, readout_size, unflatten_readout
from core.policies.base import Budget, MemoryPolicy, Schedule
from core.selection import keep_top, protect_newest, threshold_min_over_heads
from core.spectrogram import EMA, StreamingSpectrogram

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
SCHEDULE_FIELDS = ("n_up", "update_at_prompt_end")
CHOICES = {"features": ("paper", "namm_x"), "selection": ("threshold", "topk"), "head_mode": ("per_head", "shared")}


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
    # Beyond the reference (named options; the defaults are the paper's):
    features: str = "paper"  # or "namm_x" (core/namm_x.py)
    selection: str = "threshold"  # or "topk": keep ceil(budget x processed) tokens per layer at each update
    budget: float = 0.5  # topk's fraction of the processed tokens
    head_mode: str = "per_head"  # or "shared": one score per token and layer, every head keeps the same tokens
    readout_hidden: int = 0  # namm_x: tanh units beside the linear readout
    spectrogram: bool = True  # namm_x: include the paper's spectrogram bins among the features
    n_sink: int = 4  # namm_x: the sink flag's first tokens (StreamingLLM)
    snap_window: int = 32  # namm_x: SnapKV's observation window
    snap_kernel: int = 7  # namm_x: SnapKV's pooling kernel
    h2o_recent_ratio: float = 0.5  # namm_x: H2O's recent window as a share of the kept tokens
    max_received: bool = False  # namm_x: add the column of the most attention one query paid each token

    def check(self) -> None:
        """ValueError naming the first field whose value this NAMM cannot run with."""
        for name, options in CHOICES.items():
            if getattr(self, name) not in options:
                raise ValueError(f"field '{name}' must be one of {', '.join(options)}, got {getattr(self, name)!r}")
        numbers = {"n_up": self.n_up, "gamma": self.gamma, "threshold": self.threshold, "budget": self.budget,
                   "norm_eps": self.norm_eps, "age_base": self.age_base, "h2o_recent_ratio": self.h2o_recent_ratio}
        for name, value in numbers.items():
            if not math.isfinite(value):
                raise ValueError(f"field '{name}' must be a finite number, got {value!r}")
        if not 0.0 < self.budget <= 1.0:
            raise ValueError(f"field 'budget' must be a fraction in (0, 1], got {self.budget}")
        if not 0.0 <= self.h2o_recent_ratio <= 1.0:
            raise ValueError(f"field 'h2o_recent_ratio' must be in [0, 1], got {self.h2o_recent_ratio}")
        for name in ("readout_hidden", "n_sink"):
            if getattr(self, name) < 0:
                raise ValueError(f"field '{name}' must be at least 0, got {getattr(self, name)}")
        for name in ("n_up", "snap_window", "snap_kernel"):
            if getattr(self, name) < 1:
                raise ValueError(f"field '{name}' must be at least 1, got {getattr(self, name)}")
        if self.snap_kernel % 2 == 0:
            raise ValueError(f"field 'snap_kernel' must be odd (a centred pooling window), got {self.snap_kernel}")

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The namm_x feature columns, in readout order."""
        return feature_names(self.n_freq, self.spectrogram, self.max_received)

    @property
    def n_params(self) -> int:
        if self.features == "namm_x":
            return readout_size(len(self.feature_names), self.readout_hidden)
        return self.bam.n_params

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
    if isinstance(default, str):
        return isinstance(value, str)
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
        self.config.check()
        super().__init__(schedule=Schedule(self.config.n_up, self.config.update_at_prompt_end))
        self.fixed_schedule: dict = {}  # the fields of SCHEDULE_FIELDS its checkpoint's config.json sets
        self.params = torch.zeros(self.config.n_params) if params is None else torch.as_tensor(
            np.asarray(params, dtype=np.float32)).flatten()
        self._unflatten(self.params)  # validates the count
        self.spectrogram = StreamingSpectrogram(self.config.n_fft, self.config.hop, self.config.gamma)
        self.namm_x = NAMMXFeatures(self.config, self.spectrogram) if self.config.features == "namm_x" else None
        self.normaliser = FeatureNormaliser(self.config.n_freq, self.config.norm_eps)
        if norm_mean is not None:
            self.normaliser.mean = torch.as_tensor(np.asarray(norm_mean, dtype=np.float32))
        if norm_var is not None:
            self.normaliser.var = torch.as_tensor(np.asarray(norm_var, dtype=np.float32))
        self.observe_only = False  # observes like this NAMM but never updates (a shared prefix's observer)
        self._unflat_cache: tuple | None = None

    @classmethod
    def zeros(cls, config: NAMMConfig | None = None) -> "NAMM":
        """All-zero parameters. The paper's NAMM then scores every token 0 and never evicts; a `topk` NAMM
        still keeps its budget (every score ties), so use `observer` for one that keeps everything."""
        return cls(config)

    @classmethod
    def observer(cls, config: NAMMConfig) -> "NAMM":
        """Folds attention into its state as a NAMM of `config` does, and never evicts or resets anything:
        what every NAMM of that config would hold before its first update."""
        namm = cls(config)
        namm.observe_only = True
        return namm

    @property
    def n_params(self) -> int:
        return self.params.numel()

    @property
    def needs_calibration(self) -> bool:
        """Whether the features read the frozen normalisation (the paper's); namm_x ranks within the layer."""
        return self.namm_x is None

    @property
    def budget(self) -> Budget:
        return Budget(float(self.config.budget))

    def set_budget(self, budget: float) -> None:
        """The fraction a `topk` NAMM keeps (an evaluation's fixed budget, shared with the baselines)."""
        if self.config.selection != "topk":
            raise ValueError("only a NAMM with selection 'topk' keeps a budget; this one keeps what its threshold says")
        self.config.budget = float(Budget(float(budget)).value)

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        if c.features == "namm_x":
            return unflatten_readout(flat, len(c.feature_names), c.readout_hidden)
        return c.bam.unflatten(flat)

    def set_params(self, flat) -> None:
        flat = torch.as_tensor(np.asarray(flat, dtype=np.float32)).flatten()
        self._unflatten(flat)
        self.params = flat

    def _scorer_params(self, device) -> dict[str, torch.Tensor]:
        key = (self.params.data_ptr(), self.params._version, str(device))
        if self._unflat_cache is None or self._unflat_cache[0] != key:
            self._unflat_cache = (key, self._unflatten(self.params.to(device)))
        return self._unflat_cache[1]

    def use_schedule(self, schedule: Schedule) -> None:
        """Update on `schedule`, the object shared with the policies this NAMM is compared to. A field its
        checkpoint sets binds: a schedule that contradicts it is refused."""
        wanted = {"n_up": schedule.n_up, "update_at_prompt_end": schedule.at_prompt_end}
        for field, value in self.fixed_schedule.items():
            if wanted[field] != value:
                raise ValueError(f"the NAMM's checkpoint sets {field} {value}; the schedule asks for {wanted[field]}")
        self.schedule = schedule  # the one place the NAMM's cadence lives from now on (save_pretrained writes it)

    # --- the policy interface ---
    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        if self.namm_x is not None:
            self.namm_x.observe(mem, probs, rows_left)
            return
        b, h = probs.shape[:2]
        self.spectrogram.init_state(mem.state, b, h, mem.observed, probs.device)
        self.spectrogram.observe(mem.state, probs)

    def features(self, mem: LayerMemory, n_keep: int | None = None) -> torch.Tensor:
        """[B, H, P, n_features]: the paper's [age embedding | normalised spectrogram EMA], or the namm_x
        columns ([B, 1, P, F] with head_mode shared; `n_keep` places H2O's recent window)."""
        if self.namm_x is not None:
            n_keep = self.budget.tokens(mem.processed) if n_keep is None else n_keep
            return self.namm_x(mem, n_keep, self.config.head_mode == "shared")
        positions = mem.observed_positions()
        ages = positions[..., -1:] - positions
        spec = mem.state[EMA]
        if self.normaliser.calibrating:
            self.normaliser.accumulate(spec)
        emb = age_embedding(ages, self.config.age_dims, self.config.age_base).to(spec.dtype)
        return torch.cat([emb, self.normaliser(spec)], dim=-1)

    def scores(self, mem: LayerMemory, n_keep: int | None = None) -> torch.Tensor:
        """[B, H, P] (or [B, 1, P] with head_mode shared): higher is kept first."""
        feats = self.features(mem, n_keep)
        params = self._scorer_params(feats.device)
        if self.namm_x is not None:
            return readout_scores(feats, params)
        b, h, p, d = feats.shape
        flat = bam_scores(feats.reshape(b * h, p, d).float(), params, self.config.bam_hidden)
        scores = flat.view(b, h, p)
        return scores.mean(dim=1, keepdim=True) if self.config.head_mode == "shared" else scores

    def _ready(self, mem: LayerMemory) -> bool:
        return self.namm_x.ready(mem) if self.namm_x is not None else EMA in mem.state

    def select(self, mem: LayerMemory) -> torch.Tensor | None:
        if self.observe_only or not self._ready(mem):
            return None
        keep = None
        if self.config.selection == "topk":
            n_keep = self.budget.tokens(mem.processed)
            if n_keep < mem.observed:
                keep = keep_top(protect_newest(self.scores(mem, n_keep)), n_keep)
        else:
            keep = threshold_min_over_heads(self.scores(mem), self.config.threshold)
        if self.namm_x is not None:
            self.namm_x.after_update(mem)
        if keep is None or keep.shape[-1] == mem.observed:
            return None
        b, h = mem.keys.shape[:2]
        return keep.expand(b, h, keep.shape[-1]).contiguous() if keep.shape[1] != h else keep

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
        config = {"model_type": "namm", **asdict(self.config), "n_up": self.schedule.n_up,
                  "update_at_prompt_end": self.schedule.at_prompt_end, "n_params": self.n_params}
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
            config.check()
        except ValueError as err:
            raise UserError(f"{config_path}: {err}") from None
        try:
            expected = config.n_params
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
        c = self.config
        kept = f"budget={c.budget:g}" if c.selection == "topk" else f"threshold={c.threshold:g}"
        return (f"NAMM(features={c.features}, selection={c.selection}, {kept}, head_mode={c.head_mode}, "
                f"n_params={self.n_params}, n_up={self.n_up}, nonzero={bool(self.params.abs().sum() > 0)})")

