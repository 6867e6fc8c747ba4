"""A NAMM-X evolution run's held-out fitness beside every baseline readout's, on the same held-out prompts.

The log's `heldout_fitness` is the mean's value on the run's held-out prompts (training task types, drawn
from `heldout_seed`). Alone it cannot say whether evolution moved past its start: this scores each baseline
readout (tova, h2o, snapkv, l2, recency: in the run's head mode and at its budget each makes exactly that
baseline's decisions) and the given checkpoints on those prompts with the run's fitness, and prints each
row's difference to the first checkpoint with a paired bootstrap 95% interval over prompts.

    python -m bench.readout_heldout --run runs/evolve/namm_x --ckpt runs/evolve/namm_x/best --threads 1
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from core.atomic import write_json_atomic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.readout_heldout")
    parser.add_argument("--run", required=True, help="an evolution run folder (its config.yaml is read)")
    parser.add_argument("--ckpt", action="append", default=[],
                        help="a NAMM checkpoint folder to score beside the readouts (repeatable; the first is the "
                             "reference of the differences)")
    parser.add_argument("--readouts", default="tova,h2o,snapkv,l2,recency")
    parser.add_argument("--stage", type=int, default=-1, help="the stage whose held-out prompts are used")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON written here (default: <run>/readout_heldout.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from core.namm import NAMM
    from core.namm_x import baseline_readout
    from eval.lm.bootstrap import difference_interval
    from evolve.config import RUN_FOLDER_FIELDS_BEFORE, load_config
    from evolve.distributed import Dist
    from evolve.lm_fitness import LMFitness
    from evolve.loop import member_namm

    run = Path(args.run)
    config = load_config(run / "config.yaml", missing=RUN_FOLDER_FIELDS_BEFORE)  # as the run was made
    if config.fitness != "lm":
        parser.error(f"{run / 'config.yaml'}: fitness is {config.fitness!r}; this bench scores LM runs")
    template = NAMM(config.namm_config())
    if template.config.features != "namm_x":
        parser.error(f"{run / 'config.yaml'}: namm.features is {template.config.features!r}; baseline readouts "
                     "exist only for namm_x")
    stage = args.stage % len(config.stages)
    fitness = LMFitness(config, run, Dist())
    rows: dict[str, dict] = {}
    members = [(Path(c).name if Path(c).name not in ("best", "latest") else f"{run.name}/{Path(c).name}",
                NAMM.from_pretrained(c)) for c in args.ckpt]
    members += [(name, member_namm(template, baseline_readout(template.config.feature_names,
                                                              template.config.readout_hidden, name).numpy()))
                for name in args.readouts.split(",") if name]
    tasks = config.stages[stage].tasks
    for name, namm in members:
        per_task, fractions = fitness.heldout_values(namm, stage)
        rows[name] = {"fitness": fitness.combine_heldout(stage, per_task),
                      "cache_fraction": float(np.mean(fractions)),
                      "per_prompt": {t: v.tolist() for t, v in zip(tasks, per_task)}}
        print(f"{name}: {rows[name]['fitness']:.4f}", flush=True)
    reference = members[0][0]
    ones = {t: [1.0] * len(v) for t, v in rows[reference]["per_prompt"].items()}
    print(f"\nheld-out prompts: {config.heldout_prompts} per task of {', '.join(tasks)} "
          f"(seed {config.heldout_seed}), metric {config.lm_metric}")
    print(f"{'readout':<24} {'fitness':>8} {'cache':>6}   difference to {reference} [95% paired interval]")
    for name, row in rows.items():
        gap = ""
        if name != reference:
            low_high = difference_interval(row["per_prompt"], rows[reference]["per_prompt"], ones, tasks)
            diff = row["fitness"] - rows[reference]["fitness"]
            row["difference"] = diff
            row["difference_ci95"] = list(low_high) if low_high else None
            gap = f"{diff:+.4f}" + (f" [{low_high[0]:+.4f}, {low_high[1]:+.4f}]" if low_high else "")
        print(f"{name:<24} {row['fitness']:8.4f} {row['cache_fraction']:6.3f}   {gap}")
    out = Path(args.out) if args.out else run / "readout_heldout.json"
    write_json_atomic(out, {"run": run.name, "stage": stage, "heldout_prompts": config.heldout_prompts,
                            "heldout_seed": config.heldout_seed, "metric": config.lm_metric, "reference": reference,
                            "rows": rows})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
