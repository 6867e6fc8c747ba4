"""An exclusive lock on a run folder: one process writes it at a time.

The lock is `FOLDER/.lock`, holding the owner's pid, host and start time, and an advisory `flock` on
it. The kernel drops the flock when its process ends, however it ends (kill -9 included), so a lock
file left by a dead process is stale and is simply taken over; a live owner gets the second process
refused with a message naming the pid. The file is left in place on release (removing it would let
two later processes lock two different files).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from core.errors import UserError

LOCK_FILE = ".lock"


class FolderLock:
    def __init__(self, folder, what: str = "run folder"):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.what = what
        self.fd: int | None = None
        self.took_over: dict | None = None  # the stale owner's record, when the lock was taken over

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            who = f"process {owner.get('pid')} on {owner.get('host')}" if owner else "another process"
            raise UserError(f"{self.folder}: {self.what} is in use by {who} (lock file {self.path}); wait for it "
                            f"to finish or stop it, or choose another folder") from None
        previous = _read_owner(fd)
        self.took_over = previous or None
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_owner(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
