"""Package an evolution run's NAMM for shipping: the policy folder (config.json + model.safetensors,
loadable with NAMM.from_pretrained) plus its history under evolution/ (config, log, plots, best.json).

    python -m evolve.export runs/evolve/smollm2_cpu checkpoints/namm-smollm2 [--which best|latest]

The folder is assembled beside the destination and renamed into place, so a reader never sees half of it.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from core.atomic import write_folder_atomic
from core.namm import NAMM
from evolve.checkpoint import BEST, LATEST

HISTORY = ("config.yaml", "log.jsonl", "fitness.png", "cache_fraction.png", "best.json")


def export(run_dir: Path, out: Path, which: str = BEST) -> Path:
    run_dir, out = Path(run_dir), Path(out)
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

    # Files a person added (README.md, held-out results) stay.
    write_folder_atomic(out, fill, keep=lambda entry: entry.name not in {"config.json", "model.safetensors", "evolution"})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evolve.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--which", choices=["best", "latest"], default="best",
                        help="best: the mean with the best held-out fitness in the last stage; latest: the final mean")
    args = parser.parse_args(argv)
    try:
        out = export(args.run_dir, args.out, args.which)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({args.which} of {args.run_dir})")
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
