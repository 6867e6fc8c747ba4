"""Where a command writes a model folder: never over something that is there, unless asked.

A command that writes a model folder calls `check_destination` before any work (before a model loads), and
writes the folder with `replace_folder`, which builds it beside the destination and swaps it in whole: with
`--overwrite` nothing of the old folder (a README, a transfer/ report) is left beside the new weights.
A command with resume semantics passes `own_run`, which tells its own resumable folder from anything else.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from core.atomic import write_folder_atomic
from core.errors import ExistsError, UserError

OVERWRITE_FLAG = "--overwrite"
OVERWRITE_HELP = "replace a non-empty destination folder (the whole folder, swapped in atomically)"


def add_overwrite_argument(parser, help: str = OVERWRITE_HELP) -> None:
    parser.add_argument(OVERWRITE_FLAG, action="store_true", help=help)


def is_empty_folder(path) -> bool:
    path = Path(path)
    return path.is_dir() and next(path.iterdir(), None) is None


def check_folder_target(path, what: str = "output folder") -> Path:
    """`path` may become a folder: it is one already, or nothing is there (a file is refused)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: the {what} is a file, not a folder")
    return path


def check_destination(path, overwrite: bool, what: str = "output folder",
                      own_run: Callable[[Path], bool] | None = None,
                      remedy: str = f"pass {OVERWRITE_FLAG} to replace it whole") -> Path:
    """Refuse to write into `path` when it holds something, unless `overwrite`, or `own_run(path)` says it is
    the command's own resumable run. A file at `path` is refused always. Returns `path` (nothing changed)."""
    path = check_folder_target(path, what)
    if not path.exists() or is_empty_folder(path) or overwrite:
        return path
    if own_run is not None and own_run(path):
        return path
    raise ExistsError(f"{path}: the {what} is not empty; {remedy}")


def replace_folder(path, fill: Callable[[Path], None]) -> Path:
    """Build the folder with `fill(staging)` beside `path` and swap it in whole (nothing of an old `path`
    stays). On any error, `path` is left as it was."""
    return write_folder_atomic(path, fill, keep=None)


def discard_folder(path) -> None:
    """Remove `path` for a fresh start (a resumable run with --overwrite): renamed aside in one step, then
    deleted, so that the folder is never half old."""
    path = Path(path)
    if not path.exists():
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent))
    os.replace(path, aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)
