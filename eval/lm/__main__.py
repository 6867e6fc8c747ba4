"""Command line: `python -m eval.lm <mode> ...`.

Modes are registered in MODES (name -> (help, add_arguments, run)); add one there to extend the CLI.
Without a mode name, `run` is assumed: `python -m eval.lm --tasks ... --policies ...`.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import sys

from core.errors import cli_main
from eval.lm import calibrate, run, score_cli

MODES = {
    "run": ("run memory policies on tasks: table, results JSON and plot", run.add_arguments, run.run),
    "score": ("score existing prediction files like the official eval scripts", score_cli.add_arguments, score_cli.run),
    "calibrate": ("full-cache scores of a model on the built-in suite", calibrate.add_arguments, calibrate.run),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", metavar="MODE")
    for name, (help_text, add_arguments, _) in MODES.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    """A user error (bad argument or file) prints one line and returns 2."""
    return cli_main(_main, argv)


def _main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or (argv[0] not in MODES and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    return MODES[args.mode][2](args)


if __name__ == "__main__":
    sys.exit(main())
