"""Read annotation json files with errors that name the file and the field; write json atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from core.atomic import write_text_atomic
from core.errors import MissingFileError, UserError


class AnnotationError(UserError):
    """A benchmark annotation file is malformed; the message names the file, record and field."""


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}: not valid json ({e})") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not UTF-8 text (byte {e.start + 1})") from None
    except IsADirectoryError:
        raise AnnotationError(f"{path}: a folder, not an annotation file") from None


def read_record_list(path: str | Path, required: dict[str, type | tuple[type, ...]]) -> list[dict]:
    """Load a json list of records and check that each has the required fields with the right types."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a json list of records, got {type(data).__name__}")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise AnnotationError(f"{path}: record {i} is not an object")
        for field, kind in required.items():
            if field not in rec:
                raise AnnotationError(f"{path}: record {i} lacks field '{field}'")
            if not isinstance(rec[field], kind) or isinstance(rec[field], bool) and bool not in _as_tuple(kind):
                raise AnnotationError(
                    f"{path}: record {i} field '{field}' has type {type(rec[field]).__name__}, "
                    f"expected {_names(kind)}"
                )
    return data


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind) -> str:
    return " or ".join(k.__name__ for k in _as_tuple(kind))


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Write json to a temporary file beside `path`, then rename it into place."""
    write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False))


def check_candidates(path: Path, i: int, candidates: Iterable, lo: int, hi: int) -> None:
    cands = list(candidates)
    if not lo <= len(cands) <= hi or not all(isinstance(c, str) for c in cands):
        raise AnnotationError(
            f"{path}: record {i} field 'candidates' must be a list of {lo}-{hi} strings, got {cands!r:.120}"
        )
