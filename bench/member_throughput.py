"""Members evaluated per minute by the LM fitness of an evolution config on the default attention path
(attention computed once for output and observer) and on the exact path (`exact: true`), measured in one
process (paths interleaved member by member, same members, same prompts).

    python -m bench.member_throughput --config configs/evolve_smollm2_cpu.yaml --members 3 --threads 1

With the config's shared prefix, each path builds its own (a member continues on the path of its prefix) once
per generation, and its cost is spread over `popsize` members. The report says whether the two paths rank the
members identically and how far their fitness values are apart.
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

PATHS = {"default": False, "exact": True}  # name -> the config's `exact`


def ranking(values: list[float]) -> list[int]:
    """Member indices from the best fitness to the worst (ties in member order)."""
    return [int(i) for i in np.argsort(-np.asarray(values), kind="stable")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.member_throughput")
    parser.add_argument("--config", required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/member_throughput.json")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (evolve.run's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from core.namm import NAMM
    from evolve.config import load_config
    from evolve.distributed import Dist
    from evolve.lm_fitness import LMFitness
    from evolve.loop import initial_mean, member_namm

    config = load_config(args.config, args.overrides)
    scratch = Path("runs/bench_member_throughput")
    first = LMFitness(replace(config, exact=PATHS["default"]), scratch, Dist())
    fitnesses = {name: first if not exact else LMFitness(replace(config, exact=exact), scratch, Dist(),
                                                         model=first.model, tokenizer=first.tokenizer)
                 for name, exact in PATHS.items()}
    template = NAMM(config.namm_config())
    first.calibrate(template)  # the same members on both paths
    mean = initial_mean(config, template.n_params)
    rng = np.random.default_rng(args.seed)
    members = [member_namm(template, mean + config.sigma0 * rng.standard_normal(template.n_params))
               for _ in range(args.members)]
    setup_seconds = {}
    for name, fitness in fitnesses.items():
        started = time.perf_counter()
        fitness.begin_generation(0, 0)
        setup_seconds[name] = time.perf_counter() - started
    times = {name: [] for name in PATHS}
    values = {name: [] for name in PATHS}
    for i, namm in enumerate(members):
        for name in (list(PATHS) if i % 2 == 0 else list(PATHS)[::-1]):  # alternate which path runs first
            t = time.perf_counter()
            result = fitnesses[name].evaluate(namm)
            times[name].append(time.perf_counter() - t)
            values[name].append((result.fitness, result.cache_fraction))
    prefix_seconds = {name: sum(p.seconds for ps in f.current for p in (ps.prefixes or []) if p is not None)
                      for name, f in fitnesses.items()}
    per_member = {name: float(np.median(v)) for name, v in times.items()}
    amortised = {name: per_member[name] + prefix_seconds[name] / config.popsize for name in PATHS}
    rankings = {name: ranking([v[0] for v in values[name]]) for name in PATHS}
    report = {
        "config": args.config, "overrides": args.overrides, "members": args.members, "threads": args.threads,
        "shared_prefix": config.shared_prefix,
        "prompts": sum(len(ps.prompts) for ps in first.current), "prompt_length": config.stages[0].prompt_length,
        "seconds_per_member": per_member, "prefix_seconds_per_generation": prefix_seconds,
        "seconds_per_member_amortised": amortised,
        "members_per_minute": {name: 60 / amortised[name] for name in PATHS},
        "speedup_of_default": amortised["exact"] / amortised["default"],
        "identical_ranking": rankings["default"] == rankings["exact"], "rankings": rankings,
        "max_fitness_difference": max(abs(a[0] - b[0]) for a, b in zip(values["default"], values["exact"])),
        "values": values, "generation_setup_seconds": setup_seconds,
    }
    write_json_atomic(Path(args.out), report)
    print(json.dumps({k: v for k, v in report.items() if k != "values"}, indent=1))
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
