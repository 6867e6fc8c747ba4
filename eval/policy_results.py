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


class PolicyResults:
    def __init__(self, out_dir):
        self.folder = Path(out_dir) / FOLDER

    def path(self, name: str, settings: dict) -> Path:
        return self.folder / f"{name}.{_digest(settings)}.json"

    def load(self, name: str, settings: dict) -> dict | None:
        settings = json.loads(json.dumps(settings))
        path = self.path(name, settings)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not a readable result ({err}); delete it to recompute policy {name!r}") from None
        if not isinstance(data, dict) or "result" not in data:
            raise UserError(f"{path}: missing field 'result'; delete it to recompute policy {name!r}")
        return data["result"] if data.get("settings") == settings else None

    def save(self, name: str, settings: dict, result: dict) -> Path:
        path = self.path(name, settings)
        write_json_atomic(path, {"settings": settings, "result": result})
        return path
