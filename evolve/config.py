"""The evolution config: a YAML file of settings and incremental stages, validated with errors that
name the file, the line and the field.

    fitness: lm              # lm (a language model on prompt tasks) or toy (a quadratic, no model)
    model: smollm2
    popsize: 8
    namm: {n_up: 256}
    stages:
      - {name: s1, tasks: [passkey], generations: 10, prompts_per_task: 2, prompt_length: 768}

Command-line overrides `key=value` use dotted keys (`stages.0.generations=3`, `namm.n_up=128`);
values are parsed as YAML.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from evolve.yaml_lines import ConfigError, dotted, load_with_lines

FITNESS_KINDS = ("lm", "toy")
LM_METRICS = ("score", "answer_logprob", "kl", "answer_logprob_clipped", "answer_margin")
INIT_READOUTS = ("best", "tova", "h2o", "snapkv", "l2", "recency", "max_received")
DATA_SOURCES = ("builtin", "longbench")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Stage:
    name: str
    tasks: tuple[str, ...]
    generations: int
    prompts_per_task: int
    prompt_length: int


@dataclass(frozen=True)
class EvolveConfig:
    stages: tuple[Stage, ...]
    fitness: str = "lm"
    model: str = "smollm2"
    dtype: str = "float32"
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    popsize: int = 32
    sigma0: float = 0.065
    elite_ratio: float = 0.5
    diagonal: bool = True
    active: bool = False
    eval_every: int = 10
    heldout_prompts: int = 4
    heldout_seed: int = 1_000_003
    calibration_prompts: int = 4
    calibration_length: int | None = None
    data: str = "builtin"
    data_dir: str | None = None
    namm: dict = field(default_factory=dict)
    init_from: str | None = None
    toy_target: float = 0.05
    cache_weight: float = 0.0  # objective = fitness - cache_weight x mean cache fraction (0: the reference)
    # objective -= target_weight x max(0, cache fraction - target_cache), per member (None: no target)
    target_cache: float | None = None
    target_weight: float = 1.0
    # What a member's fitness measures on a prompt (see evolve/lm_fitness.py); "score" is the paper's.
    lm_metric: str = "score"
    shared_prefix: bool = True  # compute each prompt's first n_up tokens once per generation (exact)
    # the attention path of every model run (adapters.hf.attach): False computes attention once for output and
    # observer; True, the SDPA path bit-identical to the unmodified model. A run folder's config.yaml written
    # before this field existed was made on the exact path (evolve.resume_check reads it so)
    exact: bool = False
    logprob_clip: float = 3.0  # nats: answer_logprob_clipped scores 0 this far below the full cache; answer_margin clips margins here
    # namm_x: start from a baseline's readout ("best": each one scored on generation 0's prompts, the best kept)
    init_readout: str | None = None

    @property
    def total_generations(self) -> int:
        return sum(s.generations for s in self.stages)

    def stage_at(self, generation: int) -> tuple[int, Stage, int]:
        """(stage index, stage, generation within the stage) of a global generation index."""
        start = 0
        for index, stage in enumerate(self.stages):
            if generation < start + stage.generations:
                return index, stage, generation - start
            start += stage.generations
        raise IndexError(f"generation {generation} is past the last stage ({self.total_generations} generations)")

    def namm_config(self):
        from core.namm import NAMMConfig

        return NAMMConfig.from_dict(dict(self.namm), "namm")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stages"] = [{**asdict(s), "tasks": list(s.tasks)} for s in self.stages]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------- loading

# What a run folder's config.yaml written before a field existed was made with, where that is not the field's
# default today: such a run resumes as it was made.
RUN_FOLDER_FIELDS_BEFORE = {"exact": True}


def load_config(path, overrides: list[str] | tuple[str, ...] = (), missing: dict | None = None) -> EvolveConfig:
    """The config in `path`, with `overrides`; `missing`: values of fields the file does not set (before the
    overrides; RUN_FOLDER_FIELDS_BEFORE for a run folder's config.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {err.start + 1}); save the config as UTF-8") from None
    return parse_config(text, str(path), overrides, missing)


def parse_config(text: str, source: str, overrides=(), missing: dict | None = None) -> EvolveConfig:
    data, lines = load_with_lines(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: the config must be a mapping of settings")
    for key, value in (missing or {}).items():
        data.setdefault(key, value)
    where = {key: f"{source}:{line}" for key, line in lines.items()}
    for text_override in overrides:
        _apply_override(data, where, text_override)
    return _validate(data, where, source)


def _apply_override(data: dict, where: dict, text: str) -> None:
    label = f"command-line override {text!r}"
    if "=" not in text:
        raise ConfigError(f"{label}: expected key=value")
    key, raw = text.split("=", 1)
    parts: list = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    if not parts or any(p == "" for p in parts):
        raise ConfigError(f"{label}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{label}: value is not valid YAML ({err})") from None
    target = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(target, dict):
            if part not in target or target[part] is None:
                target[part] = [] if isinstance(nxt, int) else {}
            target = target[part]
        elif isinstance(target, list) and isinstance(part, int) and part < len(target):
            target = target[part]
        else:
            raise ConfigError(f"{label}: field {dotted(tuple(parts[: i + 1]))!r} does not exist")
    last = parts[-1]
    if isinstance(target, dict) and isinstance(last, str):
        target[last] = value
    elif isinstance(target, list) and isinstance(last, int) and last < len(target):
        target[last] = value
    else:
        raise ConfigError(f"{label}: field {dotted(tuple(parts))!r} does not exist")
    where[tuple(parts)] = label


class _Checker:
    def __init__(self, where: dict, source: str):
        self.where, self.source = where, source

    def loc(self, path: tuple) -> str:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.where:
                return self.where[path[:cut]]
        return self.source

    def fail(self, path: tuple, message: str):
        raise ConfigError(f"{self.loc(path)}: field {dotted(path)!r}: {message}")

    def integer(self, value, path, minimum=None, optional=False):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            self.fail(path, f"must be at least {minimum}, got {value}")
        return value

    def number(self, value, path, positive=False, upper=None):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, f"expected a number, got {value!r}")
        if positive and not value > 0:
            self.fail(path, f"must be positive, got {value}")
        if upper is not None and value > upper:
            self.fail(path, f"must be at most {upper}, got {value}")
        return float(value)

    def boolean(self, value, path):
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {value!r}")
        return value

    def string(self, value, path, choices=None, optional=False):
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(path, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


_STAGE = {"name", "tasks", "generations", "prompts_per_task", "prompt_length"}


# Each top-level setting: how it is checked (the _Checker method and its limits), in one table.
_FIELDS = {
    "fitness": ("string", {"choices": FITNESS_KINDS}),
    "model": ("string", {}),
    "dtype": ("string", {"choices": DTYPES}),
    "device": ("string", {"choices": DEVICES}),
    "threads": ("integer", {"minimum": 1, "optional": True}),
    "seed": ("integer", {"minimum": 0}),
    "popsize": ("integer", {"minimum": 2}),
    "sigma0": ("number", {"positive": True}),
    "elite_ratio": ("number", {"positive": True, "upper": 1.0}),
    "diagonal": ("boolean", {}),
    "active": ("boolean", {}),
    "eval_every": ("integer", {"minimum": 1}),
    "heldout_prompts": ("integer", {"minimum": 0}),
    "heldout_seed": ("integer", {"minimum": 0}),
    "calibration_prompts": ("integer", {"minimum": 1}),
    "calibration_length": ("integer", {"minimum": 64, "optional": True}),
    "data": ("string", {"choices": DATA_SOURCES}),
    "data_dir": ("string", {"optional": True}),
    "init_from": ("string", {"optional": True}),
    "toy_target": ("number", {}),
    "cache_weight": ("number", {}),
    "target_cache": ("number", {"positive": True, "upper": 1.0, "optional": True}),
    "target_weight": ("number", {"positive": True}),
    "lm_metric": ("string", {"choices": LM_METRICS}),
    "shared_prefix": ("boolean", {}),
    "exact": ("boolean", {}),
    "logprob_clip": ("number", {"positive": True}),
    "init_readout": ("string", {"choices": INIT_READOUTS, "optional": True}),
}


_TOP = set(_FIELDS) | {"stages", "namm"}


def _validate(data: dict, where: dict, source: str) -> EvolveConfig:
    c = _Checker(where, source)
    for key in data:
        if key not in _TOP:
            c.fail((key,), f"unknown setting; known: {', '.join(sorted(_TOP))}")
    defaults = EvolveConfig(stages=())
    kw = {}
    for key, (kind, limits) in _FIELDS.items():
        value = data.get(key, getattr(defaults, key))
        kw[key] = None if value is None and limits.get("optional") else getattr(c, kind)(value, (key,), **{
            k: v for k, v in limits.items() if k != "optional" or kind in ("integer", "string")})
    _check_combinations(c, kw)
    kw["namm"] = _namm(c, data.get("namm", defaults.namm), kw)
    kw["stages"] = _stages(c, data.get("stages"), kw["fitness"], kw["data"])
    return EvolveConfig(**kw)


def _check_combinations(c: _Checker, kw: dict) -> None:
    if kw["fitness"] == "lm" and kw["data"] == "longbench" and kw["data_dir"] is None:
        c.fail(("data_dir",), "data 'longbench' needs the folder of LongBench's <task>.jsonl files (pass --data-dir)")
    if kw["seed"] == kw["heldout_seed"]:
        c.fail(("heldout_seed",), "must differ from 'seed' (held-out prompts come from another seed)")
    if int(kw["popsize"] * kw["elite_ratio"]) < 1:
        c.fail(("elite_ratio",), "popsize x elite_ratio must keep at least one member")


def _namm(c: _Checker, namm, kw: dict) -> dict:
    """The `namm` mapping: known NAMMConfig fields with values a NAMM runs with; init_readout's needs."""
    from core.namm import NAMMConfig

    namm = {} if namm is None else namm
    if not isinstance(namm, dict):
        c.fail(("namm",), f"expected a mapping of NAMM config fields, got {namm!r}")
    known = set(NAMMConfig.__dataclass_fields__)
    for key in namm:
        if key not in known:
            c.fail(("namm", key), f"unknown NAMM config field; known: {', '.join(sorted(known))}")
    if "n_up" in namm:
        c.integer(namm["n_up"], ("namm", "n_up"), 1)
    try:
        namm_config = NAMMConfig.from_dict(dict(namm), "namm")
        namm_config.check()
    except (TypeError, ValueError) as err:
        field = next((k for k in namm if f"'{k}'" in str(err)), None)
        c.fail(("namm",) if field is None else ("namm", field), str(err))
    if kw["init_readout"] is not None:
        if namm_config.features != "namm_x":
            c.fail(("init_readout",), "a baseline's readout is a NAMM-X start: set namm.features to namm_x")
        if kw["init_readout"] == "max_received" and not namm_config.max_received:
            c.fail(("init_readout",), "the max_received readout needs its column: set namm.max_received to true")
        if kw["init_from"] is not None:
            c.fail(("init_readout",), "give init_from or init_readout, not both")
    return dict(namm)


def _stages(c: _Checker, raw, fitness: str, data_source: str) -> tuple[Stage, ...]:
    if not isinstance(raw, list) or not raw:
        c.fail(("stages",), "expected a non-empty list of stages")
    known_tasks = _known_tasks(fitness, data_source)
    stages = []
    for i, entry in enumerate(raw):
        path = ("stages", i)
        if not isinstance(entry, dict):
            c.fail(path, f"expected a mapping (tasks, generations, prompts_per_task, prompt_length), got {entry!r}")
        for key in entry:
            if key not in _STAGE:
                c.fail(path + (key,), f"unknown stage field; known: {', '.join(sorted(_STAGE))}")
        for key in ("tasks", "generations", "prompts_per_task", "prompt_length"):
            if key not in entry:
                c.fail(path + (key,), "missing")
        tasks = entry["tasks"]
        if isinstance(tasks, str):
            tasks = [tasks]
        if not isinstance(tasks, list) or not tasks:
            c.fail(path + ("tasks",), f"expected a non-empty list of task names, got {tasks!r}")
        for j, task in enumerate(tasks):
            c.string(task, path + ("tasks", j))
            if known_tasks is not None and task not in known_tasks:
                c.fail(path + ("tasks", j), f"unknown {data_source} task {task!r}; choose from {', '.join(known_tasks)}")
        if len(set(tasks)) != len(tasks):
            c.fail(path + ("tasks",), f"a task is listed twice: {tasks}")
        stages.append(Stage(
            name=c.string(entry.get("name", f"stage{i + 1}"), path + ("name",)),
            tasks=tuple(tasks),
            generations=c.integer(entry["generations"], path + ("generations",), 1),
            prompts_per_task=c.integer(entry["prompts_per_task"], path + ("prompts_per_task",), 1),
            prompt_length=c.integer(entry["prompt_length"], path + ("prompt_length",), 64),
        ))
    return tuple(stages)


def _known_tasks(fitness: str, data_source: str):
    if fitness == "toy":
        return None
    if data_source == "builtin":
        from eval.lm.builtin_tasks import TASKS

        return TASKS
    from eval.lm.longbench_config import DATASET2PROMPT

    return tuple(DATASET2PROMPT)
