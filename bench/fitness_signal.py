"""Which LM fitness carries signal: for the same members, (1) the rank correlation of each fitness on two
independent prompt draws, and (2) the rank correlation of each fitness with the generation score on
held-out items of task types evolution never sees.

Members are a CMA-ES population around the config's starting mean (init_from, zeros, or for NAMM-X the
baseline readout named by `--start` or by the config's `init_readout`) with its sigma0. On every training prompt one prefill serves all three fitnesses: the cache is copied, the
gold answer teacher-forced on the copy (answer_logprob, kl) and the original decodes greedily (score).

    python -m bench.fitness_signal --config configs/evolve_smollm2_cpu.yaml --shard 0/2 --out DIR &
    python -m bench.fitness_signal --config configs/evolve_smollm2_cpu.yaml --shard 1/2 --out DIR
    python -m bench.fitness_signal --config configs/evolve_smollm2_cpu.yaml --combine --out DIR

NAMM-X (configs/evolve_namm_x_smollm2_cpu.yaml, whose bounded fitness is answer_logprob_clipped):

    python -m bench.fitness_signal --config configs/evolve_namm_x_smollm2_cpu.yaml --start tova --shard 0/2 --out DIR
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from core.atomic import write_json_atomic

METRICS = ("score", "answer_logprob", "answer_logprob_clipped", "answer_margin", "kl")


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    # average ranks for ties
    for r, x in ((ra, np.asarray(a)), (rb, np.asarray(b))):
        for value in np.unique(x):
            idx = np.where(x == value)[0]
            r[idx] = r[idx].mean()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@torch.no_grad()
def run_prompt(model, tokenizer, policy, prompt, prefix=None, graded=True):
    """(score, AnswerRun or None, cache fraction) from one prefill: the answer is teacher-forced on a
    copy of the cache, the original decodes greedily."""
    from adapters.hf.attach import attach
    from adapters.hf.generation import decode, prefill
    from adapters.hf.teacher_forcing import answer_after_prompt

    cache = prefix.cache_for(policy) if prefix is not None else None
    answer = None
    with attach(model, policy) as session:
        cache, logits = prefill(model, session, prompt.ids, 512, cache)
        if graded:
            answer = answer_after_prompt(model, session, copy.deepcopy(cache), logits, prompt.answer_ids)
        rows, _, _ = decode(model, cache, logits, prompt.ids.shape[1], prompt.max_new_tokens, {tokenizer.eos_token_id})
    return float(prompt.score(tokenizer.decode(rows[0], skip_special_tokens=True))), answer, cache.fraction()


def start_mean(config, template, start: str | None) -> np.ndarray:
    """The population's centre: a baseline readout (NAMM-X), else the config's initial mean."""
    from evolve.loop import initial_mean

    rule = start or (config.init_readout if config.init_readout not in (None, "best") else None)
    if rule is None:
        if config.init_readout == "best":
            raise ValueError("the config starts from the best baseline readout, measured at the start of a run: "
                             "name it with --start (a run's start.json says which, e.g. --start tova)")
        return initial_mean(config, template.n_params)
    from core.namm_x import baseline_readout

    return baseline_readout(template.config.feature_names, template.config.readout_hidden, rule).double().numpy()


def members(config, n: int, seed: int, mean: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return mean + config.sigma0 * rng.standard_normal((n, mean.shape[0]))


def draw_sets(fitness, config, args):
    from evolve.prompts import seed_label

    stage = config.stages[-1]
    sets = {}
    for name in ("A", "B"):
        sets[name] = [p for task in stage.tasks for p in
                      fitness.source.draw(task, stage.prompts_per_task, stage.prompt_length, seed_label("signal", name))]
    sets["H"] = [p for task in args.heldout_tasks.split(",") for p in
                 fitness.source.draw(task, args.heldout_n, args.heldout_length, seed_label("signal", "H"))]
    return sets


def shard_main(args) -> int:
    from adapters.hf.prefix import SharedPrefix
    from core.namm import NAMM
    from core.policies import FullCache
    from evolve.config import load_config
    from evolve.distributed import Dist
    from evolve.lm_fitness import LMFitness
    from evolve.loop import member_namm

    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    out = Path(args.out)
    fitness = LMFitness(config, out / "scratch", Dist())
    template = NAMM(config.namm_config())
    fitness.calibrate(template)
    sets = draw_sets(fitness, config, args)
    rank, world = (int(x) for x in args.shard.split("/"))
    from core.errors import on_interrupt

    on_interrupt(f"{out / f'shard{rank}.json'} holds the members finished so far; a rerun computes the shard again")
    params = members(config, args.members, args.seed, start_mean(config, template, args.start))
    observer = NAMM.observer(config.namm_config())
    rows = {}
    started = time.perf_counter()
    full = {}
    for name, prompts in sets.items():
        full[name] = []
        for p in prompts:
            score, answer, _ = run_prompt(fitness.model, fitness.tokenizer, FullCache(), p, graded=name != "H")
            full[name].append((score, answer))
    prefixes = {name: [SharedPrefix(fitness.model, p.ids, observer) for p in prompts] for name, prompts in sets.items()}
    from evolve.lm_fitness import prompt_value

    for m in range(rank, args.members, world):
        namm = member_namm(template, params[m])
        entry = {}
        for name, prompts in sets.items():
            values = []
            for i, p in enumerate(prompts):
                score, answer, fraction = run_prompt(fitness.model, fitness.tokenizer, namm, p, prefixes[name][i],
                                                     graded=name != "H")
                v = {"task": p.task, "score": score, "full_score": full[name][i][0], "cache": fraction}
                if answer is not None:
                    ref = full[name][i][1]
                    for metric in METRICS:
                        if metric != "score":
                            v[metric] = prompt_value(metric, ref.logprobs, answer.logprobs, answer.answer_ids,
                                                     getattr(config, "logprob_clip", 3.0))
                values.append(v)
            entry[name] = values
        rows[m] = entry
        print(f"member {m} done at {time.perf_counter() - started:.0f}s", flush=True)
        write_json_atomic(out / f"shard{rank}.json", {"members": rows, "seconds": time.perf_counter() - started})
    return 0


def fitness_of(values: list[dict], metric: str) -> float:
    """The LM fitness of one member on one set, combined over tasks as evolve.lm_fitness does."""
    tasks = sorted({v["task"] for v in values})
    per_task = []
    for t in tasks:
        vs = [v for v in values if v["task"] == t]
        if metric == "score":
            full = np.mean([v["full_score"] for v in vs])
            if full > 0:
                per_task.append(np.mean([v["score"] for v in vs]) / full)
        else:
            per_task.append(np.mean([v[metric] for v in vs]))
    return float(np.mean(per_task)) if per_task else float("nan")


def combine_main(args) -> int:
    out = Path(args.out)
    rows = {}
    seconds = 0.0
    for path in sorted(out.glob("shard*.json")):
        data = json.loads(path.read_text())
        rows.update({int(k): v for k, v in data["members"].items()})
        seconds += data["seconds"]
    ms = sorted(rows)
    if not ms:
        from core.errors import UserError

        raise UserError(f"{out}: no shard*.json with a finished member; run the shards first (--shard RANK/WORLD)")
    heldout = [fitness_of(rows[m]["H"], "score") for m in ms]
    table = {}
    for metric in METRICS:
        if metric not in rows[ms[0]]["A"][0]:  # shards written before the metric existed
            continue
        a = [fitness_of(rows[m]["A"], metric) for m in ms]
        b = [fitness_of(rows[m]["B"], metric) for m in ms]
        both = [fitness_of(rows[m]["A"] + rows[m]["B"], metric) for m in ms]
        table[metric] = {"draw_A_vs_B": spearman(a, b), "vs_heldout_score": spearman(both, heldout),
                         "distinct_values_A": len(set(np.round(a, 9))), "mean_A": float(np.mean(a))}
    caches = [float(np.mean([v["cache"] for v in rows[m]["A"] + rows[m]["B"]])) for m in ms]
    report = {"members": len(ms), "prompts_per_draw": len(rows[ms[0]]["A"]), "heldout_items": len(rows[ms[0]]["H"]),
              "spearman": table, "heldout_score_mean": float(np.mean(heldout)),
              "heldout_score_range": [float(np.min(heldout)), float(np.max(heldout))],
              "cache_fraction_range": [float(np.min(caches)), float(np.max(caches))], "member_seconds_total": seconds}
    write_json_atomic(out / "fitness_signal.json", report)
    print("| fitness | Spearman draw A vs B | Spearman vs held-out score | distinct values (draw A) |")
    print("|---|---|---|---|")
    for metric, r in table.items():
        print(f"| {metric} | {r['draw_A_vs_B']:.2f} | {r['vs_heldout_score']:.2f} | {r['distinct_values_A']} |")
    print(json.dumps({k: v for k, v in report.items() if k != "spearman"}))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fitness_signal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--start", default=None,
                        help="NAMM-X: the baseline readout at the population's centre (tova, h2o, snapkv, l2, recency)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--heldout-tasks", default="kv_retrieval,fewshot_classification,phonebook")
    parser.add_argument("--heldout-n", type=int, default=10)
    parser.add_argument("--heldout-length", type=int, default=1000)
    parser.add_argument("--shard", default="0/1", help="RANK/WORLD: this process runs members m %% WORLD == RANK")
    parser.add_argument("--combine", action="store_true", help="read the shards' files and print the table")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    return combine_main(args) if args.combine else shard_main(args)


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
