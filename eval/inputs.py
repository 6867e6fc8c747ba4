"""Checks of the inputs every evaluation CLI shares, by kind, all made before any model loads.

- numbers with their real limits (`int_list`, `at_most`, `token_limit`, `items_fit_in_memory`);
- model folders by kind: a language model (`language_model`), a video model (`video_model`), a Decision
  Transformer (`decision_transformer`); a NAMM checkpoint is none of them;
- weight files whose header and size agree (`safetensors_shapes`): a truncated file is named, not loaded;
- a device that exists (`device`);
- output folders and files that can be written and are not files / folders (`output_folder`, `output_file`).

Each failure is a UserError naming the option, the file or the field (one line, status 2 through cli_main).
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from core.errors import UserError, read_json_object

# Context lengths of the embedded models (their converted config.json, when present, is read instead).
EMBEDDED_CONTEXT = {"smollm2": 8192, "gemma3-270m": 32768}
# Where a model states no context length: more tokens than this in one prompt are refused (a 135M model's
# cache alone is ~23 KB a token in float32; a prompt this long already takes many GB with its activations).
MAX_TOKENS_WITHOUT_CONTEXT = 131072


# ---------------------------------------------------------------- numbers

def int_list(option: str, text, minimum: int = 1, maximum: int | None = None, why: str = "") -> list[int]:
    """A comma-separated list of whole numbers, each in [minimum, maximum], none twice."""
    parts = [p.strip() for p in str(text).split(",")]
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise UserError(f"{option}: expected comma-separated whole numbers, got {part!r} in {text!r}") from None
        if value < minimum:
            raise UserError(f"{option}: each value must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise UserError(f"{option}: each value must be at most {maximum}{f' ({why})' if why else ''}, got {value}")
        values.append(value)
    if len(set(values)) != len(values):
        raise UserError(f"{option}: a value is listed twice in {text!r}")
    return values


def at_most(option: str, value, maximum: int, why: str) -> None:
    if value is not None and value > maximum:
        raise UserError(f"{option}: must be at most {maximum} ({why}), got {value}")


def token_limit(context: int | None) -> tuple[int, str]:
    """The most tokens a prompt and its answer may have, and where that limit comes from."""
    if context:
        return int(context), f"the model's context of {context} tokens"
    return MAX_TOKENS_WITHOUT_CONTEXT, (f"the model states no context length; at most {MAX_TOKENS_WITHOUT_CONTEXT} "
                                        "tokens are accepted")


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def items_fit_in_memory(option: str, n: int, tokens_per_item: int, tasks: int = 1) -> None:
    """Generated prompts are all built (and kept) before the first runs: refuse a count whose text alone
    would take more than a quarter of this machine's memory (~16 bytes a token held: text, rendering, ids)."""
    need = 16 * n * tokens_per_item * tasks
    have = memory_bytes() // 4
    if need > have:
        most = max(1, have // (16 * tokens_per_item * tasks))
        raise UserError(f"{option}: {n} items of {tokens_per_item} tokens per task would take about "
                        f"{need / 2**30:.0f} GiB to build, more than this machine can hold "
                        f"({memory_bytes() / 2**30:.0f} GiB of memory); at most {most} here")


# ---------------------------------------------------------------- devices

def device(option: str, text: str) -> str:
    """A torch device that exists on this machine (cuda:N with N below the GPU count)."""
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserError(f"{option}: {text!r} is not a device (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{option} {text}: this machine has no CUDA device; use cpu")
        if dev.index is not None and dev.index >= count:
            raise UserError(f"{option} {text}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{option} {text}: MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise UserError(f"{option} {text}: unsupported device type {dev.type!r} (cpu, cuda, cuda:N, mps)")
    return text


# ---------------------------------------------------------------- output folders and files

def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into `folder` (made if missing), or None."""
    if folder.exists() and not folder.is_dir():
        return "is a file, not a folder"
    base = _nearest_existing(folder)
    if not base.is_dir():
        return f"{base} is a file, so the folder cannot be made"
    if not os.access(base, os.W_OK | os.X_OK):
        if base == Path(os.path.abspath(folder)):
            return "the folder is not writable"
        return f"{base}, where it would be made, is not writable"
    return None


def output_folder(option: str, folder) -> Path:
    """A folder the run can create or write into: not a file, not under a file, writable (its subfolders too)."""
    folder = Path(folder)
    problem = _folder_problem(folder)
    if problem:
        raise UserError(f"{option} {folder}: {problem}")
    for sub in (folder.iterdir() if folder.is_dir() else ()):
        if sub.is_dir() and not os.access(sub, os.W_OK | os.X_OK):
            raise UserError(f"{option} {folder}: its folder {sub.name}/ is not writable")
    return folder


def output_file(option: str, path) -> Path:
    """A file path that can be written atomically (a temporary beside it, then a rename): not a folder, in a
    folder that exists or can be made and is writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder, expected a file name")
    parent = path.parent if str(path.parent) else Path(".")
    problem = _folder_problem(parent)
    if problem:
        where = {"is a file, not a folder": f"{parent} is a file, not a folder",
                 "the folder is not writable": "its folder is not writable"}.get(problem, problem)
        raise UserError(f"{option} {path}: {where}")
    return path


# ---------------------------------------------------------------- weight files

def safetensors_shapes(path) -> dict[str, list[int]]:
    """Each tensor's shape, read from the header; a file whose header is not valid, or whose size is not the
    one its header states (truncated or padded), is refused naming the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise UserError(f"{path}: not a safetensors file (only {size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise UserError(f"{path}: truncated or not a safetensors file (header of {n} bytes in a "
                                f"{size}-byte file)")
            header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path}: not a safetensors file (its header is not JSON)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: not a safetensors file (its header is not a JSON object)")
    end, shapes = 0, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = info["data_offsets"]
            shapes[name] = [int(d) for d in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: tensor {name!r} has no valid shape and offsets in the header") from None
        end = max(end, int(stop))
    if 8 + n + end != size:
        raise UserError(f"{path}: the header describes {8 + n + end} bytes but the file has {size} "
                        "(truncated or damaged); copy it again")
    return shapes


def _config(folder: Path, option: str) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{option} {folder}: not a model folder (no config.json)")
    return read_json_object(path, "a model config (a JSON object)")


def _not_a_namm(option: str, folder: Path, config: dict, wanted: str) -> None:
    if config.get("model_type") == "namm":
        raise UserError(f"{option} {folder}: a NAMM checkpoint (a memory policy), not {wanted}; "
                        "a NAMM goes to --ckpt")


def _weights(option: str, folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not files:
        raise UserError(f"{option} {folder}: no weights (*.safetensors or *.bin)")
    for file in files:
        if file.suffix == ".safetensors":
            safetensors_shapes(file)
    return files


HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")  # owner/name on the Hugging Face hub


def _missing_folder(option: str, name: str) -> None:
    """A name that is not there must read as a hub name (`owner/name`, or a bare name): anything else that looks
    like a path (a leading dot or slash, more than one separator) is a folder that does not exist."""
    if (os.sep in name or name.startswith(".")) and not HUB_NAME.match(name):
        raise UserError(f"{option} {name}: folder not found")


# ---------------------------------------------------------------- model folders by kind

def language_model(option: str, name: str) -> int | None:
    """Check a language model name or folder without loading it; returns its context length (None: unknown)."""
    from adapters.loading import EMBEDDED, SUPPORTED_FAMILIES, cache_dir

    if name in EMBEDDED:
        converted = cache_dir() / EMBEDDED[name].folder / "config.json"
        if converted.is_file():
            try:
                return _context(read_json_object(converted)) or EMBEDDED_CONTEXT.get(name)
            except UserError:
                pass  # the loader converts again
        return EMBEDDED_CONTEXT.get(name)
    folder = Path(name)
    if not folder.exists():
        _missing_folder(option, name)
        return None  # a hub name: the loader fetches it (or says why not)
    if not folder.is_dir():
        raise UserError(f"{option} {name}: a file, not a model folder")
    config = _config(folder, option)
    _not_a_namm(option, folder, config, "a language model")
    family = config.get("model_type")
    if family not in SUPPORTED_FAMILIES:
        raise UserError(f"{option} {folder}: config.json model_type {family!r} is not a supported language model "
                        f"(supported: {', '.join(SUPPORTED_FAMILIES)})")
    _weights(option, folder)
    return _context(config)


def _context(config: dict) -> int | None:
    value = config.get("max_position_embeddings")
    if value is None and isinstance(config.get("text_config"), dict):
        value = config["text_config"].get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None


VIDEO_MODEL_TYPES = ("llava_next_video",)


def video_model(option: str, name: str) -> None:
    """A video model folder by its marker file (the SmolLM2 LLaVA, the tiny model) or a Hugging Face
    LLaVA-NeXT-Video config; anything else (a NAMM, a DT, a language model, an empty folder) is refused."""
    from zoo.video.processor import FILE as TINY_PROCESSOR
    from zoo.video.smol_llava import META as SMOL_META

    folder = Path(name)
    if not folder.exists():
        _missing_folder(option, name)
        return  # a hub name
    if not folder.is_dir():
        raise UserError(f"{option} {name}: a file, not a model folder")
    if (folder / SMOL_META).is_file():
        read_json_object(folder / SMOL_META)
        for file in folder.glob("*.safetensors"):
            safetensors_shapes(file)
        return
    if not (folder / "config.json").is_file():
        raise UserError(f"{option} {folder}: not a video model folder (no {SMOL_META}, {TINY_PROCESSOR} or "
                        "config.json)")
    config = _config(folder, option)
    _not_a_namm(option, folder, config, "a video model")
    if (folder / TINY_PROCESSOR).is_file():
        read_json_object(folder / TINY_PROCESSOR)
    elif config.get("model_type") not in VIDEO_MODEL_TYPES:
        raise UserError(f"{option} {folder}: config.json model_type {config.get('model_type')!r} is not a video "
                        f"model (expected {', '.join(VIDEO_MODEL_TYPES)})")
    _weights(option, folder)


def env_dims(env: str) -> tuple[int, int]:
    """(observation size, action size) of the environment, from its spaces (no model involved)."""
    from eval.rl.envs import make_env

    made = make_env(env)
    try:
        return int(made.observation_space.shape[0]), int(made.action_space.shape[0])
    finally:
        made.close()


def decision_transformer(option: str, folder, env: str) -> dict:
    """A Decision Transformer folder for `env`: its config (dimensions of the env's spaces), weights whose
    shapes agree, and dt_meta.json (its env, state_mean and state_std of the state's size). Returns the config."""
    import math

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{option} {folder}: folder not found")
    config = _config(folder, option)
    _not_a_namm(option, folder, config, "a Decision Transformer")
    if config.get("model_type") != "decision_transformer":
        raise UserError(f"{option} {folder}: config.json model_type {config.get('model_type')!r} is not a Decision "
                        "Transformer (expected 'decision_transformer')")
    state_dim, act_dim = env_dims(env)
    for field, want in (("state_dim", state_dim), ("act_dim", act_dim)):
        if config.get(field) != want:
            raise UserError(f"{folder / 'config.json'}: field '{field}' is {config.get(field)!r}, but {env}'s "
                            f"{'states' if field == 'state_dim' else 'actions'} have {want} values; this DT is "
                            f"not for {env}")
    if not isinstance(config.get("max_ep_len"), int) or config["max_ep_len"] < 1:
        raise UserError(f"{folder / 'config.json'}: field 'max_ep_len' must be a positive whole number")
    weights = folder / "model.safetensors"
    if weights.is_file():
        shapes = safetensors_shapes(weights)
        for tensor, axis, want in (("embed_state.weight", 1, state_dim), ("predict_action.0.weight", 0, act_dim)):
            shape = shapes.get(tensor)
            if shape is None or len(shape) != 2 or shape[axis] != want:
                raise UserError(f"{weights}: tensor {tensor!r} has shape {shape}, expected size {want} on axis "
                                f"{axis} (config.json's {'state_dim' if axis == 1 else 'act_dim'})")
    elif not (folder / "pytorch_model.bin").is_file():
        raise UserError(f"{option} {folder}: no weights (model.safetensors)")
    meta_path = folder / "dt_meta.json"
    if meta_path.is_file():
        meta = read_json_object(meta_path)
        if meta.get("env") is not None:
            from eval.rl.envs import canonical_env

            try:
                made_for = canonical_env(str(meta["env"]))
            except ValueError:
                raise UserError(f"{meta_path}: field 'env' is {meta['env']!r}, not a known environment") from None
            if made_for != env:
                raise UserError(f"{meta_path}: field 'env' is {made_for!r}: this DT was trained on {made_for}, "
                                f"not {env}; pass --env {made_for} or another --dt")
        for field in ("state_mean", "state_std"):
            value = meta.get(field)
            if value is None:
                continue
            if not isinstance(value, list) or len(value) != state_dim or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
                shown = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
                raise UserError(f"{meta_path}: field '{field}' must be {state_dim} finite numbers (the state's "
                                f"size), got {shown}")
        if meta.get("state_std") and any(v <= 0 for v in meta["state_std"]):
            raise UserError(f"{meta_path}: field 'state_std' must be positive")
        for field in ("scale", "target_return", "context"):
            value = meta.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise UserError(f"{meta_path}: field '{field}' must be a number, got {value!r}")
        if meta.get("context") is not None and (int(meta["context"]) != meta["context"] or meta["context"] < 1):
            raise UserError(f"{meta_path}: field 'context' must be a positive whole number, got {meta['context']!r}")
    return config
