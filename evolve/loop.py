"""The generation loop: ask, evaluate the members (sharded over ranks), tell, log, checkpoint."""
from __future__ import annotations

import time
from dataclasses import dataclass
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
    from core.namm_x import baseline_readout, start_readouts

    names = start_readouts(template.config.feature_names) if config.init_readout == "best" else (config.init_readout,)
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


@dataclass
class Run:
    """What the generation loop carries: the optimiser, the template NAMM (config and frozen normalisation),
    the counters and best result, and the log rows so far (rank 0's)."""
    optimizer: CMAES
    template: NAMM
    state: RunState
    rows: list


def resume_run(config: EvolveConfig, run_dir: Path, dist: Dist, trust_run_dir: bool) -> Run:
    optimizer, latest, state = load_checkpoint(run_dir, config.namm_config().n_params, config.popsize, trust_run_dir)
    check_resume_config(run_dir, config, state.next_generation)
    template = NAMM(config.namm_config(), None, latest.normaliser.mean, latest.normaliser.var)
    return Run(optimizer, template, state, read_log(run_dir, state.next_generation) if dist.is_main else [])


def start_run(config: EvolveConfig, run_dir: Path, fitness: Fitness, dist: Dist) -> Run:
    """Generation 0: the starting mean (zeros, init_from, or a baseline's readout) and the frozen
    normalisation (gathered with the all-zero NAMM, or init_from's own)."""
    if has_checkpoint(run_dir):
        raise ExistsError(f"{run_dir} already holds a run (state.json); pass --resume or choose another --out")
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    template = NAMM(config.namm_config())
    if config.init_readout is not None:
        x0, start = baseline_start(config, template, fitness, dist)
        if dist.is_main:
            write_json_atomic(run_dir / START_FILE, start)
    else:
        x0 = initial_mean(config, template.n_params)
    optimizer = CMAES.create(template.n_params, config.popsize, config.sigma0, config.elite_ratio, config.diagonal,
                             config.active, config.seed, x0)
    if config.init_from is None:
        fitness.calibrate(template)  # the paper's features: frozen normalisation from the all-zero NAMM
    else:  # the starting parameters were fitted to their own frozen normalisation: keep it
        fitted = NAMM.from_pretrained(config.init_from)
        template.normaliser.mean = fitted.normaliser.mean.clone()
        template.normaliser.var = fitted.normaliser.var.clone()
    return Run(optimizer, template, RunState(), [])


def evaluate_members(config: EvolveConfig, run: Run, fitness: Fitness, dist: Dist, generation: int) -> dict:
    """Ask, evaluate every member (each rank its share), tell; the generation's log row."""
    stage_index, stage, in_stage = config.stage_at(generation)
    fitness.begin_generation(stage_index, generation)
    solutions = run.optimizer.ask()
    local = torch.zeros(len(solutions), 2, dtype=torch.float64)
    for i in dist.shard(len(solutions)):
        result = fitness.evaluate(member_namm(run.template, solutions[i]))
        local[i, 0], local[i, 1] = result.fitness, result.cache_fraction
    gathered = dist.sum(local).numpy()
    task_values, fractions = gathered[:, 0], gathered[:, 1]
    values = objective(config, task_values, fractions)
    run.optimizer.tell(solutions, values)
    row = {"generation": generation, "stage": stage_index, "stage_name": stage.name,
           "stage_generation": in_stage, "fitness_mean": float(values.mean()),
           "fitness_max": float(values.max()), "fitness_min": float(values.min()),
           "cache_fraction_mean": float(np.nanmean(fractions)) if np.isfinite(fractions).any() else None,
           "sigma": run.optimizer.sigma}
    if config.cache_weight or config.target_cache is not None:
        row["task_fitness_mean"] = float(task_values.mean())
    return row


def heldout_due(config: EvolveConfig, generation: int) -> bool:
    _, stage, in_stage = config.stage_at(generation)
    return (generation + 1) % config.eval_every == 0 or in_stage == stage.generations - 1


def evaluate_mean(config: EvolveConfig, run: Run, fitness: Fitness, dist: Dist, generation: int, row: dict,
                  run_dir: Path) -> None:
    """The mean on the stage's held-out prompts, into `row`; the best mean of the stage kept in best/."""
    stage_index, stage, _ = config.stage_at(generation)
    mean_namm = member_namm(run.template, run.optimizer.mean)
    held = fitness.evaluate_heldout(mean_namm, stage_index)
    if held is None:
        return
    held_value = float(objective(config, np.array([held.fitness]), np.array([held.cache_fraction]))[0])
    row["heldout_fitness"], row["heldout_cache_fraction"] = held_value, held.cache_fraction
    if config.cache_weight or config.target_cache is not None:
        row["heldout_task_fitness"] = held.fitness
    best = run.state.best
    if best.get("stage") != stage_index or held_value > best["fitness"]:
        run.state.best = {"fitness": held_value, "cache_fraction": held.cache_fraction,
                          "generation": generation, "stage": stage_index, "stage_name": stage.name}
        if dist.is_main:
            save_best(run_dir, mean_namm, run.state.best)


def record(run: Run, run_dir: Path, row: dict, dist: Dist) -> None:
    """Rank 0 writes the log, its plots and the checkpoint (state.json last); every rank then goes on."""
    run.state.next_generation = row["generation"] + 1
    if dist.is_main:
        run.rows.append(row)
        write_log(run_dir, run.rows)
        plot_log(run_dir, run.rows)
        save_checkpoint(run_dir, run.optimizer, run.template, run.state)
    dist.barrier()


def evolve(config: EvolveConfig, run_dir, fitness: Fitness | None = None, resume: bool = False,
           dist: Dist | None = None, progress: bool = True,
           on_generation: Callable[[int, CMAES], None] | None = None, trust_run_dir: bool = False) -> CMAES:
    """Run (or resume) every stage of `config` in `run_dir`; return the optimiser (its `.mean` is the
    solution). `on_generation(g, optimizer)` is called after generation g is committed. An older run folder
    whose optimiser state is a pickle resumes only with `trust_run_dir`."""
    run_dir = Path(run_dir)
    dist = dist or Dist()
    fitness = fitness if fitness is not None else make_fitness(config, run_dir, dist)
    if resume and has_checkpoint(run_dir):
        run = resume_run(config, run_dir, dist, trust_run_dir)
    else:
        run = start_run(config, run_dir, fitness, dist)
    if dist.is_main:
        write_text_atomic(run_dir / "config.yaml", config.to_yaml())
    bar = tqdm(total=config.total_generations, initial=run.state.next_generation, desc="evolve", unit="gen",
               disable=not (progress and dist.is_main))
    for generation in range(run.state.next_generation, config.total_generations):
        started = time.perf_counter()
        row = evaluate_members(config, run, fitness, dist, generation)
        if heldout_due(config, generation):
            evaluate_mean(config, run, fitness, dist, generation, row, run_dir)
        row["seconds"] = time.perf_counter() - started
        record(run, run_dir, row, dist)
        bar.set_postfix(fitness=f"{row['fitness_mean']:.4g}", sigma=f"{run.optimizer.sigma:.4g}")
        bar.update()
        if on_generation is not None:
            on_generation(generation, run.optimizer)
    bar.close()
    return run.optimizer
