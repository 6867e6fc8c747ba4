"""Package an evolution run's NAMM for shipping: the policy folder (config.json + model.safetensors,
loadable with NAMM.from_pretrained) plus its history under evolution/ (config, log, plots, best.json).

    python -m evolve.export runs/evolve/smollm2_cpu checkpoints/namm-smollm2 [--which best|latest] [--overwrite]

A destination that holds anything is refused unless --overwrite is given; then it is replaced whole (no
README or transfer/ report of the old NAMM stays beside the new one). The folder is assembled beside the
destination and renamed into place, so a reader never sees half of it.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import shutil
import sys
from pathlib import Path

from core.destination import add_overwrite_argument, check_destination, replace_folder
from core.errors import cli_main, on_interrupt
from core.namm import NAMM
from evolve.checkpoint import BEST, LATEST

HISTORY = ("config.yaml", "log.jsonl", "fitness.png", "cache_fraction.png", "best.json")


def export(run_dir: Path, out: Path, which: str = BEST, overwrite: bool = False) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    check_destination(out, overwrite, "destination checkpoint folder")
    source = run_dir / (BEST if which == "best" else LATEST)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: no NAMM here (config.json missing); is {run_dir} an evolution run folder?")
    namm = NAMM.from_pretrained(source)  # validates before anything is written

    def fill(staging: Path) -> None:
        namm.save_pretrained(staging)
        (staging / "evolution").mkdir()
        for name in HISTORY:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / "evolution" / name)

    replace_folder(out, fill)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evolve.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--which", choices=["best", "latest"], default="best",
                        help="best: the mean with the best held-out fitness in the last stage; latest: the final mean")
    add_overwrite_argument(parser)
    args = parser.parse_args(argv)
    on_interrupt(f"nothing was written to {args.out} (the folder is swapped in whole only when complete)")
    try:
        out = export(args.run_dir, args.out, args.which, args.overwrite)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.which} of {args.run_dir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main(main))  # a project error: one line, status 2
