"""Per-policy results of `eval.rl` and `eval.video`, each written as soon as that policy finishes.

OUT/policies/<policy>.<hash>.json holds {"settings", "result"}; <hash> is a digest of the settings
(everything that changes the result: model or DT, NAMM checkpoint content, budget, n_up, episodes,
frames, ...). A rerun into the same folder reuses a policy's result only under equal settings, so a
failure in one policy, or a kill, loses none of the policies already done, and a rerun with other
settings can neither reuse nor overwrite them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.atomic import write_json_atomic
from core.errors import UserError

FOLDER = "policies"


def file_sha256(*paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def _shown(folder: Path) -> str:
    """A folder inside the repository by its path there (results committed beside a checkpoint name no
    machine's paths); any other folder as it is."""
    try:
        return folder.relative_to(Path(__file__).resolve().parents[1]).as_posix()
    except ValueError:
        return str(folder)


def model_identity(model: str) -> dict:
    """The model's name, and for a local folder its config's content and its weights' sizes and times."""
    folder = Path(model)
    if not folder.is_dir():
        return {"model": model}
    configs = sorted(folder.glob("*.json"))
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    return {"model": _shown(folder.resolve()), "configs_sha256": file_sha256(*configs) if configs else None,
            "weights": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in weights]}


def _digest(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


NUMBER = ((int, float), "a number")
OPTIONAL_NUMBER = ((int, float, type(None)), "a number or null")
OBJECT = (dict, "an object")


def check_result(path: Path, result, required: dict) -> None:
    """A stored result's fields that a run reads, with their types: {field: (types, what)}."""
    if not isinstance(result, dict):
        raise UserError(f"{path}: field 'result' must be an object, got {type(result).__name__}; delete the file "
                        "to recompute it")
    for field, (types, what) in required.items():
        value = result.get(field, ...)
        if value is ... or isinstance(value, bool) or not isinstance(value, types):
            got = "nothing" if value is ... else f"{value!r:.40}"
            raise UserError(f"{path}: field 'result.{field}' must be {what}, got {got}; delete the file to "
                            "recompute it")


class PolicyResults:
    def __init__(self, out_dir, required: dict | None = None):
        """`required`: the fields every stored result must have, {field: (types, what)}."""
        self.folder = Path(out_dir) / FOLDER
        self.required = required or {}

    def check_all(self) -> None:
        """Every stored result in the folder is readable and has the required fields (before a run starts)."""
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else ():
            self._read(path, path.name.split(".")[0])

    def _read(self, path: Path, name: str) -> dict:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not a readable result ({err}); delete it to recompute policy {name!r}") from None
        except OSError as err:
            raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
        if not isinstance(data, dict) or "result" not in data:
            raise UserError(f"{path}: missing field 'result'; delete it to recompute policy {name!r}")
        if not isinstance(data.get("settings"), dict):
            raise UserError(f"{path}: field 'settings' must be an object; delete it to recompute policy {name!r}")
        check_result(path, data["result"], self.required)
        return data

    def path(self, name: str, settings: dict) -> Path:
        return self.folder / f"{name}.{_digest(settings)}.json"

    def load(self, name: str, settings: dict) -> dict | None:
        settings = json.loads(json.dumps(settings))
        path = self.path(name, settings)
        if not path.is_file():
            return None
        data = self._read(path, name)
        return data["result"] if data.get("settings") == settings else None

    def save(self, name: str, settings: dict, result: dict) -> Path:
        path = self.path(name, settings)
        write_json_atomic(path, {"settings": settings, "result": result})
        return path
