"""The project's user-error type and the one-line handling every command line shares.

A `UserError` is a problem with what the user gave (an argument, a data file, a run folder), not a bug:
its message names the file, the line and the field where they are known. Each CLI runs its main
function through `cli_main`, which prints such an error as one line on stderr and exits with status 2,
with no traceback; Ctrl-C becomes one line saying what was saved and how to resume (what the command
registered with `on_interrupt`, or a generic line) and status 130. The project's older error types (ConfigError, DataError, AnnotationError,
DatasetFormatError) are UserErrors too.
"""
from __future__ import annotations

import sys
from typing import Callable


class UserError(ValueError):
    """A bad input; the message says what and where (file:line: field ...)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (still a FileNotFoundError for older callers)."""


class ExistsError(UserError, FileExistsError):
    """A file or folder the user named already holds something that must not be overwritten."""


class ArgumentTypeError(UserError, TypeError):
    """An API argument of the wrong type; the message names the argument."""


USAGE_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for a command ended by Ctrl-C
GENERIC_INTERRUPT = "stopped before the end; files the command had finished writing are complete (each is written whole)"
_interrupt_note: list[str] = []
_depth: list = []  # the cli_main calls running now, outermost first


def on_interrupt(message: str) -> None:
    """What a Ctrl-C should tell the user from now on (what was saved, how to resume); the last call wins."""
    _interrupt_note[:] = [message]


def read_json_object(path, what: str = "a JSON object") -> dict:
    """The JSON object in `path`; a UserError naming the file if it is not UTF-8, not JSON or not an object.
    FileNotFoundError passes through for callers that give a missing file its own message."""
    import json

    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected {what}, got {type(data).__name__}")
    return data


def interrupt_quietly_while_starting() -> None:
    """For a command's `__main__` module, before its heavy imports (torch, transformers take seconds): a Ctrl-C
    while they load ends the process with one line and status 130, not an import traceback. `cli_main`
    hands Ctrl-C back to Python once the command's own code runs."""
    import os
    import signal

    def stop(signum, frame):
        print("interrupted: while the command was starting; nothing was written", file=sys.stderr, flush=True)
        os._exit(INTERRUPTED_STATUS)

    signal.signal(signal.SIGINT, stop)


def _restore_interrupt() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not \
            signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def cli_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run `main(argv)`; a UserError becomes `error: MESSAGE` on stderr and status 2, Ctrl-C one line
    `interrupted: ...` (see `on_interrupt`) and status 130."""
    if not _depth:
        _restore_interrupt()
    outer_note = list(_interrupt_note)
    _depth.append(main)
    try:
        return main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return USAGE_STATUS
    except KeyboardInterrupt:
        if len(_depth) > 1:  # a command run by another (eval.transfer runs eval.lm): the outer one reports
            raise
        note = _interrupt_note[0] if _interrupt_note else GENERIC_INTERRUPT
        print(f"interrupted: {note}", file=sys.stderr, flush=True)
        return INTERRUPTED_STATUS
    finally:
        _depth.pop()
        if _depth:
            _interrupt_note[:] = outer_note


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
