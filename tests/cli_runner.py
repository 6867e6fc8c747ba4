"""Run command lines (`python -m MODULE ARGS`) in child processes that start with torch and the CLIs already
imported: a case then costs a fraction of a second instead of the several seconds every `python -m` spends
importing torch.

    python tests/cli_runner.py          # reads one JSON request a line on stdin, answers one JSON line each

A request is {"module", "argv", "cwd", "env", "stdout", "stderr", "timeout"}. The runner forks; the child
changes to `cwd`, updates the environment, sends its stdout and stderr to the two files and runs the module
as `python -m` would (runpy, run_name "__main__"). An exception that escapes prints its traceback, exit status
1, as the interpreter does. The answer: {"rc": status (minus the signal number if killed, -14 on timeout),
"transformers": whether the child imported transformers (every model loader does, no input check does)}.
Nothing ran torch in the runner before it forks, so no thread pool is copied into a child.
"""
from __future__ import annotations

import json
import os
import sys

PRELOAD = ("torch", "numpy", "eval.lm.__main__", "eval.lm.run", "eval.rl.__main__", "eval.video.__main__",
           "eval.transfer.__main__", "evolve.run", "eval.inputs", "gymnasium")


def _child(request: dict) -> None:
    import runpy
    import signal
    import traceback

    signal.alarm(int(request.get("timeout", 120)))
    os.chdir(request["cwd"])
    os.environ.update(request.get("env", {}))
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = [request["module"], *request["argv"]]
    for name in (request["module"], request["module"] + ".__main__"):  # run afresh as __main__, as `-m` does
        if name in sys.modules and not hasattr(sys.modules[name], "__path__"):
            del sys.modules[name]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what the interpreter would print
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    with open(request["stderr"] + ".modules", "w") as f:
        f.write("transformers" if "transformers" in sys.modules else "")
    os._exit(code)


def serve() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                _child(request)
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        marker = request["stderr"] + ".modules"
        imported = os.path.exists(marker) and open(marker).read() == "transformers"
        if os.path.exists(marker):
            os.remove(marker)
        print(json.dumps({"rc": rc, "transformers": imported}), flush=True)


if __name__ == "__main__":
    serve()
