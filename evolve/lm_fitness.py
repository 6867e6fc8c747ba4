"""The LM fitness: per task, the candidate's mean score divided by the full-cache mean on the same
prompts, averaged over tasks.

A task whose full-cache mean is 0 on the drawn prompts carries no reference and is left out of the
average; if every task is left out, the fitness is the candidate's mean raw score.
Collective steps (every rank calls them in the same order): `calibrate`, `begin_generation` (full-cache
scores, computed once per prompt set, sharded over ranks, cached in <run>/fullcache/) and
`evaluate_heldout` (the held-out prompts sharded over ranks). `evaluate` runs one member on this rank.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adapters.hf.calibration import calibrate_normalisation
from adapters.hf.generation import greedy_generate
from adapters.loading import DTYPES
from core.namm import NAMM
from core.policies import FullCache
from evolve.baseline_cache import BaselineCache, prompt_set_key
from evolve.distributed import Dist
from evolve.fitness import Evaluation
from evolve.prompts import BuiltinPrompts, LongBenchPrompts, Prompt, seed_label



class LMFitness:
    def __init__(self, config, run_dir, dist: Dist, model=None, tokenizer=None):
        self.config, self.dist = config, dist
        if model is None:
            from adapters.loading import load_model

            model, tokenizer = load_model(config.model, DTYPES[config.dtype], self._device(config))
        self.model, self.tokenizer = model, tokenizer
        if config.data == "builtin":
            self.source = BuiltinPrompts(tokenizer)
        else:
            self.source = LongBenchPrompts(tokenizer, config.data_dir, config.heldout_prompts, config.heldout_seed)
        self.baselines = BaselineCache(Path(run_dir) / "fullcache")
        self.current: list[tuple[str, list[Prompt], float]] = []  # (task, prompts, full-cache mean)
        self._heldout: dict[int, list[tuple[str, list[Prompt], float]]] = {}

    @staticmethod
    def _device(config) -> str:
        if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
            return "cpu"
        return f"cuda:{torch.cuda.current_device()}"

    # --- running prompts ---
    def _run(self, policy, prompt: Prompt) -> tuple[float, float]:
        gen = greedy_generate(self.model, prompt.ids, policy, max_new_tokens=prompt.max_new_tokens,
                              eos_token_id=self.tokenizer.eos_token_id)
        text = self.tokenizer.decode(gen.tokens[0], skip_special_tokens=True)
        return float(prompt.score(text)), float(gen.cache_fraction)

    def _run_sharded(self, policy, prompts: list[Prompt]) -> tuple[np.ndarray, np.ndarray]:
        """Scores and cache fractions of every prompt, each rank running its share."""
        local = torch.zeros(len(prompts), 2, dtype=torch.float64)
        for i in self.dist.shard(len(prompts)):
            local[i, 0], local[i, 1] = self._run(policy, prompts[i])
        both = self.dist.sum(local).numpy()
        return both[:, 0], both[:, 1]

    def _full_mean(self, task: str, prompts: list[Prompt], label: str, length: int) -> float:
        key = prompt_set_key(model=self.config.model, dtype=self.config.dtype, data=self.source.name, task=task,
                             n=len(prompts), length=length, label=label)
        cached = self.baselines.get(key, len(prompts)) if self.dist.is_main else None
        flag = self.dist.broadcast(torch.tensor([1.0 if cached is not None else 0.0], dtype=torch.float64))
        if flag.item() > 0:
            values = torch.tensor(cached if cached is not None else [0.0] * len(prompts), dtype=torch.float64)
            scores = self.dist.broadcast(values).numpy()
        else:
            scores, _ = self._run_sharded(FullCache(), prompts)
            if self.dist.is_main:
                self.baselines.put(key, scores.tolist(), {"task": task, "label": label, "length": length,
                                                          "model": self.config.model, "data": self.source.name})
        return float(np.mean(scores))

    def _prompt_set(self, stage, label: str, heldout: bool) -> list[tuple[str, list[Prompt], float]]:
        out = []
        for task in stage.tasks:
            if heldout:
                prompts = self.source.heldout(task, self.config.heldout_prompts, stage.prompt_length, label)
            else:
                prompts = self.source.draw(task, stage.prompts_per_task, stage.prompt_length, label)
            out.append((task, prompts, self._full_mean(task, prompts, label, stage.prompt_length)))
        return out

    @staticmethod
    def _combine(prompt_set, scores_per_task: list[np.ndarray]) -> float:
        ratios = [float(np.mean(s)) / full for (_, _, full), s in zip(prompt_set, scores_per_task) if full > 0]
        if ratios:
            return float(np.mean(ratios))
        return float(np.mean([np.mean(s) for s in scores_per_task]))

    # --- the fitness interface ---
    def calibrate(self, namm: NAMM) -> None:
        stage = self.config.stages[0]
        length = self.config.calibration_length or stage.prompt_length
        if self.dist.is_main:
            ids = [p.ids for task in stage.tasks for p in
                   self.source.draw(task, self.config.calibration_prompts, length, seed_label("calibration", self.config.seed))]
            count = calibrate_normalisation(namm, self.model, ids)
            if count == 0:
                raise ValueError(f"calibration saw no features: prompts of {length} tokens are shorter than the "
                                 f"NAMM's n_up ({namm.config.n_up}); raise calibration_length or lower namm.n_up")
        stats = torch.stack([namm.normaliser.mean.double(), namm.normaliser.var.double()])
        stats = self.dist.broadcast(stats)
        namm.normaliser.mean = stats[0].float()
        namm.normaliser.var = stats[1].float()

    def begin_generation(self, stage_index: int, generation: int) -> None:
        stage = self.config.stages[stage_index]
        self.current = self._prompt_set(stage, seed_label("train", self.config.seed, generation), heldout=False)

    def evaluate(self, namm: NAMM) -> Evaluation:
        scores, fractions = [], []
        for _, prompts, _ in self.current:
            runs = [self._run(namm, p) for p in prompts]
            scores.append(np.array([r[0] for r in runs]))
            fractions.extend(r[1] for r in runs)
        return Evaluation(self._combine(self.current, scores), float(np.mean(fractions)))

    def evaluate_heldout(self, namm: NAMM, stage_index: int) -> Evaluation | None:
        if self.config.heldout_prompts == 0:
            return None
        if stage_index not in self._heldout:
            label = seed_label("heldout", self.config.heldout_seed)
            self._heldout[stage_index] = self._prompt_set(self.config.stages[stage_index], label, heldout=True)
        prompt_set = self._heldout[stage_index]
        flat = [p for _, prompts, _ in prompt_set for p in prompts]
        scores, fractions = self._run_sharded(namm, flat)
        per_task, start = [], 0
        for _, prompts, _ in prompt_set:
            per_task.append(scores[start:start + len(prompts)])
            start += len(prompts)
        return Evaluation(self._combine(prompt_set, per_task), float(np.mean(fractions)))
