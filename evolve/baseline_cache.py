"""Full-cache scores per prompt set, computed once and kept on disk (the fitness denominators)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.atomic import write_json_atomic


def prompt_set_key(**fields) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


class BaselineCache:
    def __init__(self, folder):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str, n: int) -> list[float] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}); delete it to recompute") from None
        scores = data.get("scores")
        if not isinstance(scores, list) or len(scores) != n:
            raise ValueError(f"{path}: field 'scores' should list {n} values; delete the file to recompute")
        return [float(s) for s in scores]

    def put(self, key: str, scores: list[float], meta: dict) -> None:
        write_json_atomic(self.path(key), {**meta, "scores": [float(s) for s in scores]})
