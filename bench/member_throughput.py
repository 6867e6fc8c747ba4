"""Members evaluated per minute by the LM fitness of an evolution config on several attention paths, measured
in one process (paths interleaved member by member, same members, same prompts).

    python -m bench.member_throughput --config configs/evolve_smollm2_cpu.yaml --members 3 --threads 1
    python -m bench.member_throughput --config ... --paths default,exact,default@bfloat16

A path is `default` (attention computed once for output and observer) or `exact` (`exact: true`: SDPA output,
the observer's attention computed apart), optionally with `@dtype` to run the model in another dtype than the
config's (its own model, its own full-cache references). With the config's shared prefix, each path builds
its own (a member continues on the path of its prefix) once per generation, and its cost is spread over
`popsize` members. The report gives each path's members per minute, its speed against the exact path, and
whether it ranks the members as the exact path does (and how far its fitness values are).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.fitness_signal import spearman
from core.atomic import write_json_atomic
from core.errors import UserError

PATHS = {"default": False, "exact": True}  # name -> the config's `exact`
REFERENCE = "exact"


def ranking(values: list[float]) -> list[int]:
    """Member indices from the best fitness to the worst (ties in member order)."""
    return [int(i) for i in np.argsort(-np.asarray(values), kind="stable")]


def parse_paths(text: str, config_dtype: str) -> dict[str, tuple[bool, str]]:
    """{name: (exact, dtype)} of a comma-separated `--paths`; the exact path at the config's dtype is always
    measured (every speed is relative to it)."""
    from evolve.config import DTYPES

    out = {}
    for name in [p.strip() for p in text.split(",") if p.strip()]:
        base, _, dtype = name.partition("@")
        if base not in PATHS:
            raise UserError(f"--paths {name}: the path must be one of {', '.join(PATHS)} (optionally @dtype)")
        if dtype and dtype not in DTYPES:
            raise UserError(f"--paths {name}: unknown dtype {dtype!r}; one of {', '.join(DTYPES)}")
        out[name] = (PATHS[base], dtype or config_dtype)
    if REFERENCE not in out:
        out[REFERENCE] = (True, config_dtype)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.member_throughput")
    parser.add_argument("--config", required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--paths", default="default,exact",
                        help="comma-separated: default, exact, each optionally @dtype (e.g. default@bfloat16)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/member_throughput.json")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (evolve.run's)")
    args = parser.parse_args(argv)
    from core.namm import NAMM
    from evolve.config import load_config
    from evolve.distributed import Dist
    from evolve.lm_fitness import LMFitness
    from evolve.loop import initial_mean, member_namm

    config = load_config(args.config, args.overrides)
    paths = parse_paths(args.paths, config.dtype)
    torch.set_num_threads(args.threads)
    scratch = Path("runs/bench_member_throughput")
    fitnesses, models = {}, {}
    for name, (exact, dtype) in paths.items():
        shared = models.get(dtype)
        fitness = LMFitness(replace(config, exact=exact, dtype=dtype), scratch, Dist(),
                            model=shared[0] if shared else None, tokenizer=shared[1] if shared else None)
        models.setdefault(dtype, (fitness.model, fitness.tokenizer))
        fitnesses[name] = fitness
    template = NAMM(config.namm_config())
    fitnesses[REFERENCE].calibrate(template)  # the same members on every path
    mean = initial_mean(config, template.n_params)
    rng = np.random.default_rng(args.seed)
    members = [member_namm(template, mean + config.sigma0 * rng.standard_normal(template.n_params))
               for _ in range(args.members)]
    setup_seconds = {}
    for name, fitness in fitnesses.items():
        started = time.perf_counter()
        fitness.begin_generation(0, 0)
        setup_seconds[name] = time.perf_counter() - started
    names = list(fitnesses)
    times = {name: [] for name in names}
    values = {name: [] for name in names}
    for i, namm in enumerate(members):
        for name in names[i % len(names):] + names[: i % len(names)]:  # rotate which path runs first
            t = time.perf_counter()
            result = fitnesses[name].evaluate(namm)
            times[name].append(time.perf_counter() - t)
            values[name].append((result.fitness, result.cache_fraction))
    prefix_seconds = {name: sum(p.seconds for ps in f.current for p in (ps.prefixes or []) if p is not None)
                      for name, f in fitnesses.items()}
    per_member = {name: float(np.median(v)) for name, v in times.items()}
    amortised = {name: per_member[name] + prefix_seconds[name] / config.popsize for name in names}
    rankings = {name: ranking([v[0] for v in values[name]]) for name in names}
    reference = [v[0] for v in values[REFERENCE]]
    report = {
        "config": args.config, "overrides": args.overrides, "members": args.members, "threads": args.threads,
        "paths": {name: {"exact": e, "dtype": d} for name, (e, d) in paths.items()},
        "shared_prefix": config.shared_prefix,
        "prompts": sum(len(ps.prompts) for ps in fitnesses[REFERENCE].current),
        "prompt_length": config.stages[0].prompt_length,
        "seconds_per_member": per_member, "prefix_seconds_per_generation": prefix_seconds,
        "seconds_per_member_amortised": amortised,
        "members_per_minute": {name: 60 / amortised[name] for name in names},
        "speedup_over_exact": {name: amortised[REFERENCE] / amortised[name] for name in names},
        "identical_ranking_to_exact": {name: rankings[name] == rankings[REFERENCE] for name in names},
        "spearman_to_exact": {name: spearman([v[0] for v in values[name]], reference) for name in names},
        "max_fitness_difference_to_exact": {name: max(abs(a[0] - b) for a, b in zip(values[name], reference))
                                            for name in names},
        "rankings": rankings, "values": values, "generation_setup_seconds": setup_seconds,
    }
    write_json_atomic(Path(args.out), report)
    print(json.dumps({k: v for k, v in report.items() if k != "values"}, indent=1))
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
