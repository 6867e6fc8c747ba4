"""Read JSON-lines files with errors that name the file, the line and the field."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Sequence

from core.errors import UserError


class DataError(UserError):
    """A benchmark or prediction file is missing or malformed."""


def read_jsonl(path: Path, required: Sequence[str] = ()) -> Iterator[tuple[int, dict]]:
    """Yield (line number, record) for each non-blank line; check that `required` fields are present."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{number}: not UTF-8 text (byte {e.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            for field in required:
                if field not in record:
                    raise DataError(f"{path}:{number}: missing field '{field}'")
            yield number, record


def expect_type(path: Path, number: int, record: dict, field: str, types, what: str) -> None:
    if not isinstance(record[field], types):
        raise DataError(f"{path}:{number}: field '{field}' must be {what}, got {type(record[field]).__name__}")


def expect_str_list(path: Path, number: int, record: dict, field: str, optional: bool = False) -> None:
    """`field` is a list of strings (or, when `optional`, also null or absent)."""
    value = record.get(field)
    if optional and value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        shown = type(value).__name__ if not isinstance(value, list) else \
            f"a list holding {type(next(v for v in value if not isinstance(v, str))).__name__}"
        raise DataError(f"{path}:{number}: field '{field}' must be a list of strings"
                        f"{' or null' if optional else ''}, got {shown}")
