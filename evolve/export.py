"""Package an evolution run's NAMM for shipping: the policy folder (config.json + model.safetensors,
loadable with NAMM.from_pretrained) plus its history under evolution/ (config, log, plots, best.json).

    python -m evolve.export runs/evolve/smollm2_cpu checkpoints/namm-smollm2 [--which best|latest]

The folder is assembled beside the destination and renamed into place, so a reader never sees half of it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from core.namm import NAMM
from evolve.checkpoint import BEST, LATEST

HISTORY = ("config.yaml", "log.jsonl", "fitness.png", "cache_fraction.png", "best.json")


def export(run_dir: Path, out: Path, which: str = BEST) -> Path:
    run_dir, out = Path(run_dir), Path(out)
    source = run_dir / (BEST if which == "best" else LATEST)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: no NAMM here (config.json missing); is {run_dir} an evolution run folder?")
    namm = NAMM.from_pretrained(source)  # validates before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp's folder is private; a shipped folder is not
    try:
        namm.save_pretrained(staging)
        (staging / "evolution").mkdir()
        for name in HISTORY:
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, staging / "evolution" / name)
        if out.exists():
            keep = [p for p in out.iterdir() if p.name not in {"config.json", "model.safetensors", "evolution"}]
            for extra in keep:  # files a person added (README.md, held-out results) stay
                shutil.move(str(extra), staging / extra.name)
            retired = out.parent / f".{out.name}.old"
            shutil.rmtree(retired, ignore_errors=True)
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
    sys.exit(main())
