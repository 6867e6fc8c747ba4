"""The generation loop: ask, evaluate the members (sharded over ranks), tell, log, checkpoint."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from core.errors import ExistsError
from core.namm import NAMM
from evolve.checkpoint import RunState, has_checkpoint, load_checkpoint, save_best, save_checkpoint
from evolve.config import EvolveConfig
from evolve.distributed import Dist
from evolve.fitness import Fitness, make_fitness
from evolve.optimizer import CMAES
from evolve.resume_check import check_resume_config
from core.atomic import write_json_atomic, write_text_atomic

START_FILE = "start.json"  # NAMM-X: which baseline's readout generation 0 starts from, and each one's fitness
from evolve.runlog import plot_log, read_log, write_log


def member_namm(template: NAMM, params) -> NAMM:
    """A NAMM with `template`'s config and frozen normalisation and the given parameters."""
    return NAMM(template.config, np.asarray(params, dtype=np.float32), template.normaliser.mean.clone(),
                template.normaliser.var.clone())


def objective(config: EvolveConfig, fitness: np.ndarray, cache_fraction: np.ndarray) -> np.ndarray:
    """What CMA-ES maximises: the task fitness (the reference), less `cache_weight` x the cache fraction
    and less `target_weight` x the cache fraction's excess over `target_cache`, when those named
    options are set."""
    if not config.cache_weight and config.target_cache is None:
        return fitness
    if not np.isfinite(cache_fraction).all():
        raise ValueError("cache_weight or target_cache is set but the fitness reports no cache fraction")
    value = fitness - config.cache_weight * cache_fraction
    if config.target_cache is not None:
        value = value - config.target_weight * np.maximum(0.0, cache_fraction - config.target_cache)
    return value


def baseline_start(config: EvolveConfig, template: NAMM, fitness: Fitness, dist: Dist) -> tuple[np.ndarray, dict]:
    """NAMM-X's starting mean: the readout of `init_readout`, or with "best" the baseline readout that scores
    highest on generation 0's prompts (measured here, each one sharded over ranks like a member)."""
    from core.namm_x import BASELINE_READOUTS, baseline_readout

    names = BASELINE_READOUTS if config.init_readout == "best" else (config.init_readout,)
    vectors = {n: baseline_readout(template.config.feature_names, template.config.readout_hidden, n).numpy()
               for n in names}
    if len(names) == 1:
        return vectors[names[0]].astype(np.float64), {"init_readout": names[0]}
    stage_index, _, _ = config.stage_at(0)
    fitness.begin_generation(stage_index, 0)
    local = torch.zeros(len(names), 2, dtype=torch.float64)
    for i in dist.shard(len(names)):
        result = fitness.evaluate(member_namm(template, vectors[names[i]]))
        local[i, 0], local[i, 1] = result.fitness, result.cache_fraction
    gathered = dist.sum(local).numpy()
    values = objective(config, gathered[:, 0], gathered[:, 1])
    best = names[int(np.argmax(values))]
    record = {"init_readout": best, "head_mode": template.config.head_mode, "budget": template.config.budget,
              "generation_0_fitness": {n: float(v) for n, v in zip(names, values)}}
    return vectors[best].astype(np.float64), record


def initial_mean(config: EvolveConfig, n_params: int) -> np.ndarray:
    if config.init_from is None:
        return np.zeros(n_params)
    start = NAMM.from_pretrained(config.init_from)
    if start.n_params != n_params:
        raise ValueError(f"init_from {config.init_from}: the checkpoint has {start.n_params} parameters but the "
                         f"config's NAMM has {n_params}")
    return start.params.double().numpy()


def evolve(config: EvolveConfig, run_dir, fitness: Fitness | None = None, resume: bool = False,
           dist: Dist | None = None, progress: bool = True,
           on_generation: Callable[[int, CMAES], None] | None = None, trust_run_dir: bool = False) -> CMAES:
    """Run (or resume) every stage of `config` in `run_dir`; return the optimiser (its `.mean` is the
    solution). `on_generation(g, optimizer)` is called after generation g is committed. An older run folder
    whose optimiser state is a pickle resumes only with `trust_run_dir`."""
    run_dir = Path(run_dir)
    dist = dist or Dist()
    namm_config = config.namm_config()
    n_params = namm_config.n_params
    fitness = fitness if fitness is not None else make_fitness(config, run_dir, dist)
    if resume and has_checkpoint(run_dir):
        optimizer, latest, state = load_checkpoint(run_dir, n_params, config.popsize, trust_run_dir)
        check_resume_config(run_dir, config, state.next_generation)
        template = NAMM(namm_config, None, latest.normaliser.mean, latest.normaliser.var)
        rows = read_log(run_dir, state.next_generation) if dist.is_main else []
    else:
        if has_checkpoint(run_dir):
            raise ExistsError(f"{run_dir} already holds a run (state.json); pass --resume or choose another --out")
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        template = NAMM(namm_config)
        start = None
        if config.init_readout is not None:
            x0, start = baseline_start(config, template, fitness, dist)
        else:
            x0 = initial_mean(config, n_params)
        optimizer = CMAES.create(n_params, config.popsize, config.sigma0, config.elite_ratio, config.diagonal,
                                 config.active, config.seed, x0)
        if start is not None and dist.is_main:
            write_json_atomic(run_dir / START_FILE, start)
        if config.init_from is None:
            fitness.calibrate(template)  # generation 0: frozen normalisation from the all-zero NAMM
        else:  # the starting parameters were fitted to their own frozen normalisation: keep it
            start = NAMM.from_pretrained(config.init_from)
            template.normaliser.mean = start.normaliser.mean.clone()
            template.normaliser.var = start.normaliser.var.clone()
        state = RunState()
        rows = []
    if dist.is_main:
        write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    total = config.total_generations
    bar = tqdm(total=total, initial=state.next_generation, desc="evolve", unit="gen",
               disable=not (progress and dist.is_main))
    for generation in range(state.next_generation, total):
        started = time.perf_counter()
        stage_index, stage, in_stage = config.stage_at(generation)
        fitness.begin_generation(stage_index, generation)
        solutions = optimizer.ask()
        local = torch.zeros(len(solutions), 2, dtype=torch.float64)
        for i in dist.shard(len(solutions)):
            result = fitness.evaluate(member_namm(template, solutions[i]))
            local[i, 0], local[i, 1] = result.fitness, result.cache_fraction
        gathered = dist.sum(local).numpy()
        task_values, fractions = gathered[:, 0], gathered[:, 1]
        values = objective(config, task_values, fractions)
        optimizer.tell(solutions, values)
        row = {"generation": generation, "stage": stage_index, "stage_name": stage.name,
               "stage_generation": in_stage, "fitness_mean": float(values.mean()),
               "fitness_max": float(values.max()), "fitness_min": float(values.min()),
               "cache_fraction_mean": float(np.nanmean(fractions)) if np.isfinite(fractions).any() else None,
               "sigma": optimizer.sigma}
        if config.cache_weight or config.target_cache is not None:
            row["task_fitness_mean"] = float(task_values.mean())
        if (generation + 1) % config.eval_every == 0 or in_stage == stage.generations - 1:
            mean_namm = member_namm(template, optimizer.mean)
            held = fitness.evaluate_heldout(mean_namm, stage_index)
            if held is not None:
                held_value = float(objective(config, np.array([held.fitness]), np.array([held.cache_fraction]))[0])
                row["heldout_fitness"], row["heldout_cache_fraction"] = held_value, held.cache_fraction
                if config.cache_weight or config.target_cache is not None:
                    row["heldout_task_fitness"] = held.fitness
                if state.best.get("stage") != stage_index or held_value > state.best["fitness"]:
                    state.best = {"fitness": held_value, "cache_fraction": held.cache_fraction,
                                  "generation": generation, "stage": stage_index, "stage_name": stage.name}
                    if dist.is_main:
                        save_best(run_dir, mean_namm, state.best)
        row["seconds"] = time.perf_counter() - started
        state.next_generation = generation + 1
        if dist.is_main:
            rows.append(row)
            write_log(run_dir, rows)
            plot_log(run_dir, rows)
            save_checkpoint(run_dir, optimizer, template, state)
        dist.barrier()
        bar.set_postfix(fitness=f"{row['fitness_mean']:.4g}", sigma=f"{optimizer.sigma:.4g}")
        bar.update()
        if on_generation is not None:
            on_generation(generation, optimizer)
    bar.close()
    return optimizer
