"""Seconds per generation of an evolution config with 1 process and with N processes (torchrun, gloo).

Runs the first stage of the config for a few generations in a fresh folder per world size, with the
same total number of CPU threads (1 process x T threads against N processes x T/N threads), and prints
the mean seconds per generation and the speed-up measured in this one invocation. Held-out checks are
off so that every generation does the same work (ask, full-cache references for the new prompts, members).

    python -m bench.evolve_processes --config configs/evolve_smollm2_cpu.yaml --generations 3 --threads 2
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from core.atomic import write_text_atomic


def one_stage_config(config_path: Path, generations: int, out: Path) -> Path:
    data = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    data["stages"] = [dict(data["stages"][0], generations=generations)]
    data["heldout_prompts"] = 0
    path = out / "bench_config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def run_world(config: Path, world: int, threads: int, out: Path) -> dict:
    run_dir = out / f"world{world}"
    args = ["-m", "evolve.run", "--config", str(config), "--out", str(run_dir), "--no-progress",
            f"threads={max(1, threads // world)}"]
    if world > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"] + args
    started = time.perf_counter()
    subprocess.run([sys.executable] + args, check=True)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    seconds = [r["seconds"] for r in rows]
    return {"world_size": world, "threads_per_process": max(1, threads // world), "wall_s": wall,
            "seconds_per_generation": seconds, "mean_s": sum(seconds) / len(seconds),
            "mean_after_first_s": sum(seconds[1:]) / max(1, len(seconds) - 1),
            "fitness_mean": [r["fitness_mean"] for r in rows]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/evolve_smollm2_cpu.yaml"))
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in total, split over the processes")
    parser.add_argument("--worlds", default="1,2")
    parser.add_argument("--out", type=Path, help="results JSON")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="nammx-bench-evolve-") as tmp:
        config = one_stage_config(args.config, args.generations, Path(tmp))
        for world in [int(w) for w in args.worlds.split(",")]:
            results.append(run_world(config, world, args.threads, Path(tmp)))
    base = results[0]["mean_after_first_s"]
    print(f"\n{args.config}, first stage, {args.generations} generations, {args.threads} threads in total")
    print("| processes | threads each | s/generation (all) | s/generation (after the first) | speed-up | fitness means |")
    print("|---|---|---|---|---|---|")
    for r in results:
        fits = ", ".join(f"{f:.3f}" for f in r["fitness_mean"])
        print(f"| {r['world_size']} | {r['threads_per_process']} | {r['mean_s']:.1f} | {r['mean_after_first_s']:.1f} | "
              f"{base / r['mean_after_first_s']:.2f}x | {fits} |")
    if args.out:
        write_text_atomic(args.out, json.dumps({"config": str(args.config), "generations": args.generations,
                                                "threads": args.threads, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
