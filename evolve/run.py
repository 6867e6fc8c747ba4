"""Command line: evolve a NAMM with CMA-ES over the stages of a config.

    python -m evolve.run --config configs/evolve_smollm2_cpu.yaml [--out runs/evolve/NAME] [--resume] [key=value ...]
    torchrun --nproc_per_node 2 -m evolve.run --config ...      # the population shards over the processes
    accelerate launch --multi_gpu --num_processes 2 -m evolve.run --config ...   # the same through accelerate
    (several machines: README, "Evolution on several machines")

With --resume the run folder's checkpoint is continued exactly (the config defaults to the folder's
config.yaml; a folder without a checkpoint starts fresh; overrides such as more generations extend a run). Overrides use dotted keys: stages.0.generations=3 namm.n_up=128 popsize=16.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import torch

from core.atomic import remove_stale_temporaries
from core.destination import check_destination
from core.errors import cli_main, on_interrupt
from core.lock import FolderLock
from evolve.config import RUN_FOLDER_FIELDS_BEFORE, load_config
from evolve.distributed import env_rank, init_from_env, shutdown
from evolve.loop import evolve


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m evolve.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (configs/evolve_*.yaml)")
    parser.add_argument("--out", help="run folder (default runs/evolve/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's checkpoint")
    parser.add_argument("--trust-run-dir", action="store_true",
                        help="allow --resume to unpickle an older run's optimizer-*.pkl (runs code from the file: "
                             "only for a run folder you or someone you trust wrote)")
    parser.add_argument("--data-dir", help="benchmark data folder (sets data_dir, e.g. LongBench's *.jsonl)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser.parse_args(argv)


def check_lengths(config, source) -> None:
    """Prompt lengths within the model's context (or the bound where it states none), before it loads."""
    if config.fitness != "lm":
        return
    from core.errors import UserError
    from eval.inputs import language_model, token_limit

    limit, where = token_limit(language_model(f"{source}: field 'model'", config.model))
    lengths = [(f"stages.{i}.prompt_length", s.prompt_length) for i, s in enumerate(config.stages)]
    lengths.append(("calibration_length", config.calibration_length))
    for field, value in lengths:
        if value is not None and value > limit:
            raise UserError(f"{source}: field {field!r} is {value}, more than {where}")


RUN_FILES = ("state.json", "config.yaml", "log.jsonl", ".lock", "fullcache")  # what marks a folder as a run


def is_run_folder(path: Path) -> bool:
    """A folder an evolution run wrote (resumable), as opposed to a checkpoint or anything else."""
    return any((Path(path) / name).exists() for name in RUN_FILES)


def main(argv=None) -> int:
    """A user error (config, run folder, checkpoint) prints one line and returns 2."""
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    args = parse_args(argv)
    if args.config is None and not (args.resume and args.out):
        print("error: --config is required (or --resume with --out of an existing run)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / "evolve" / Path(args.config).stem
    from eval.inputs import output_folder

    output_folder("--out", out)  # not a file, writable: before the config is read or anything is written
    config_path = Path(args.config) if args.config else out / "config.yaml"
    overrides = list(args.overrides) + ([f"data_dir={args.data_dir}"] if args.data_dir else [])
    check_destination(out, False, "--out folder", own_run=is_run_folder,
                      remedy="it is not an evolution run folder; choose another --out")
    # the run folder's own config.yaml: a field it lacks was not there when the run was made
    config = load_config(config_path, overrides, None if args.config else RUN_FOLDER_FIELDS_BEFORE)
    check_lengths(config, config_path)
    on_interrupt(f"{out} holds the run up to its last finished generation; add --resume to the same command "
                 f"to continue")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    main_rank = env_rank() == 0  # rank 0 writes the folder, so it holds the lock
    with FolderLock(out) if main_rank else nullcontext() as lock:
        if lock is not None:
            remove_stale_temporaries(out, untagged=True)  # a killed writer's; no one else writes here now
        dist = init_from_env()
        try:
            optimizer = evolve(config, out, resume=args.resume, dist=dist, progress=not args.no_progress,
                               trust_run_dir=args.trust_run_dir)
        finally:
            shutdown(dist)
    if dist.is_main:
        print(f"done: {config.total_generations} generations in {out}; the mean is in {out / 'latest'}, "
              f"the best held-out mean in {out / 'best'} (sigma {optimizer.sigma:.4g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
