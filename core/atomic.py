"""Atomic writes: a temporary file (or folder) beside the target, then os.replace (nothing half-written).

Temporaries are named `<target>.<pid>-<random>.tmp` (folders: `.<target>.<pid>-<random>.tmp`), so that a
later run can tell its own kind of leftovers from a live writer's: `remove_stale_temporaries` deletes
those whose process is gone (a run killed between writing and renaming).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

_TAGGED = re.compile(r"\.(\d+)-[a-z0-9_]{8}\.tmp$")
_UNTAGGED = re.compile(r"\.[a-z0-9_]{8}\.tmp$")  # this module's files before the pid was in the name


def _tag() -> str:
    return f".{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder, untagged: bool = False) -> list[Path]:
    """Delete, under `folder`, the temporaries this module made for processes that no longer run; with
    `untagged` (only for a caller holding the folder's lock) also older ones without a pid. Returns them."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for root, dirs, files in os.walk(folder):
        for name in list(dirs) + files:
            match = _TAGGED.search(name)
            stale = (match is not None and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1)))) \
                or (untagged and match is None and name in files and _UNTAGGED.search(name) is not None)
            if not stale:
                continue
            path = Path(root) / name
            if name in dirs:
                dirs.remove(name)
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_bytes_atomic(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + _tag(), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, data) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_folder_atomic(path, fill: Callable[[Path], None], keep: Callable[[Path], bool] | None = None) -> Path:
    """Build a folder by `fill(staging)` in a hidden folder beside `path`, then swap it in whole.

    Entries of an existing `path` for which `keep(entry)` is true move into the new folder (files a person
    added, such as a model card). On any error the staging folder is removed and `path` is left as it was.
    The folder gets the usual permissions (mkdtemp makes it private).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}{_tag()}", suffix=".tmp", dir=path.parent))
    retired = path.with_name(f".{path.name}.old")
    try:
        fill(staging)
        umask = os.umask(0)
        os.umask(umask)
        for folder, _, files in os.walk(staging):
            os.chmod(folder, 0o777 & ~umask)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o666 & ~umask)
        if path.exists():
            for entry in list(path.iterdir()):
                if keep is not None and keep(entry) and not (staging / entry.name).exists():
                    shutil.move(str(entry), staging / entry.name)
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(path, retired)
        os.replace(staging, path)
        shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path
