"""Members evaluated per minute by the LM fitness of an evolution config, with and without the shared
prompt prefix, measured in one process (configurations interleaved, same members, same prompts).

    python -m bench.member_throughput --config configs/evolve_smollm2_cpu.yaml --members 3 --threads 1

The shared prefix is built once per generation; its cost is spread over `popsize` members in the
"per member, amortised" column. Both configurations must give the same fitness for every member.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.atomic import write_json_atomic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.member_throughput")
    parser.add_argument("--config", required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/member_throughput.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from core.namm import NAMM
    from evolve.config import load_config
    from evolve.distributed import Dist
    from evolve.lm_fitness import LMFitness
    from evolve.loop import initial_mean, member_namm

    config = load_config(args.config)
    scratch = Path("runs/bench_member_throughput")
    fitness = LMFitness(config, scratch, Dist())
    template = NAMM(config.namm_config())
    fitness.calibrate(template)
    mean = initial_mean(config, template.n_params)
    rng = np.random.default_rng(args.seed)
    members = [member_namm(template, mean + config.sigma0 * rng.standard_normal(template.n_params))
               for _ in range(args.members)]
    started = time.perf_counter()
    fitness.config = replace(config, shared_prefix=True)
    fitness.begin_generation(0, 0)
    with_prefix_setup = time.perf_counter() - started
    shared_sets = fitness.current
    fitness.config = replace(config, shared_prefix=False)
    plain_sets = [replace(ps, prefixes=None) for ps in shared_sets]
    times = {"shared": [], "plain": []}
    values = {"shared": [], "plain": []}
    for namm in members:
        for name, sets in (("plain", plain_sets), ("shared", shared_sets)):
            fitness.current = sets
            t = time.perf_counter()
            result = fitness.evaluate(namm)
            times[name].append(time.perf_counter() - t)
            values[name].append((result.fitness, result.cache_fraction))
    prefix_seconds = sum(p.seconds for ps in shared_sets for p in ps.prefixes if p is not None)
    per_member = {k: float(np.median(v)) for k, v in times.items()}
    amortised = per_member["shared"] + prefix_seconds / config.popsize
    report = {
        "config": args.config, "members": args.members, "threads": args.threads,
        "prompts": sum(len(ps.prompts) for ps in shared_sets), "prompt_length": config.stages[0].prompt_length,
        "seconds_per_member": per_member, "prefix_seconds_per_generation": prefix_seconds,
        "seconds_per_member_shared_amortised": amortised,
        "members_per_minute": {"plain": 60 / per_member["plain"], "shared_amortised": 60 / amortised},
        "speedup": per_member["plain"] / amortised,
        "identical_fitness": values["shared"] == values["plain"], "values": values,
        "generation_setup_seconds": with_prefix_setup,
    }
    write_json_atomic(Path(args.out), report)
    print(json.dumps({k: v for k, v in report.items() if k != "values"}, indent=1))
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
