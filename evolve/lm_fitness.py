"""The LM fitness: per task, the mean over prompts of how well a member does relative to the full cache
on the same prompts, averaged over tasks. `lm_metric` names what is measured on a prompt:

- `score` (the paper's): the task metric of a greedy generation; a task's value is the member's mean
  score divided by the full-cache mean. A task whose full-cache mean is 0 on the drawn prompts carries
  no reference and is left out; if every task is left out, the fitness is the member's mean raw score.
- `answer_logprob`: the gold answer teacher-forced after the compressed prompt; a prompt's value is
  exp(mean token log-probability under the member - the same under the full cache), the ratio of
  the geometric-mean probabilities of the answer's tokens (1: as good as the full cache).
- `kl`: the same forward; a prompt's value is exp(-mean over answer positions of
  KL(full-cache next-token distribution || member's)), 1 when the distributions agree.
- `answer_logprob_clipped` (bounded, NAMM-X): d = mean answer-token log-probability under the member minus
  the same under the full cache, clipped to [-logprob_clip, 0] and mapped to 1 + d / logprob_clip in [0, 1].
  A member never earns more than the full cache on a prompt, and one lost prompt costs at most 1/n of the
  task, so no outlier ranks the members (`answer_logprob`'s exp ratio reached 2.55 on one prompt).
- `answer_margin` (bounded, greedy-aligned): the same forward; an answer's margin is the smallest, over its
  tokens, of log p(gold token) minus the largest log p of any other token. It is positive exactly when greedy
  decoding reproduces the whole gold answer, so it ranks members as their greedy answers do, where a mean over
  the answer's tokens can rise while the one token that decides the answer falls. A prompt's value is
  1 + min(0, m - m_full) / (2 x logprob_clip), both margins first clipped to [-logprob_clip, logprob_clip]:
  in [0, 1], 1 when the member's margin is at least the full cache's.

Both graded values are continuous where the score is 0 or 1, so two members rarely tie.

With `shared_prefix` (exact, on by default) each prompt's first `n_up` tokens are run once per
generation under the all-zero NAMM and every member continues from a copy (adapters/hf/prefix.py).

Every model run (members, full-cache references, calibration, the shared prefixes) takes the config's
attention path (`exact`; adapters.hf.attach): by default attention is computed once for output and observer.

Collective steps (every rank calls them in the same order): `calibrate`, `begin_generation` (full-cache
references, computed once per prompt set, sharded over ranks; scores are cached in <run>/fullcache/)
and `evaluate_heldout` (the held-out prompts sharded over ranks). `evaluate` runs one member on this rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adapters.hf.calibration import calibrate_normalisation
from adapters.hf.generation import greedy_generate
from adapters.hf.teacher_forcing import answer_logprobs, mean_kl
from adapters.loading import DTYPES
from core.namm import NAMM
from core.policies import FullCache
from evolve.baseline_cache import BaselineCache, prompt_set_key
from evolve.distributed import Dist
from evolve.evaluation import Evaluation
from evolve.prompts import BuiltinPrompts, LongBenchPrompts, Prompt, seed_label


@dataclass
class PromptSet:
    """One task's prompts with their full-cache references (score mean, or answer log-probabilities)."""
    task: str
    prompts: list[Prompt]
    full_mean: float = float("nan")  # score metric
    reference: list[torch.Tensor] | None = None  # graded metrics: [n_answer, vocab] per prompt
    prefixes: list | None = None  # SharedPrefix (or None) per prompt


def prompt_value(metric: str, reference: torch.Tensor, candidate: torch.Tensor, answer_ids: torch.Tensor,
                 clip: float = 3.0) -> float:
    """A graded metric's value of one prompt (1.0 when the candidate equals the full cache)."""
    if metric in ("answer_logprob", "answer_logprob_clipped"):
        ref = reference.gather(1, answer_ids.view(-1, 1)).mean()
        cand = candidate.gather(1, answer_ids.view(-1, 1)).mean()
        if metric == "answer_logprob":
            return math.exp(float(cand - ref))
        return 1.0 + min(0.0, max(-clip, float(cand - ref))) / clip
    if metric == "kl":
        return math.exp(-mean_kl(reference, candidate))
    if metric == "answer_margin":
        def bounded(logprobs):
            return min(clip, max(-clip, answer_margin(logprobs, answer_ids)))
        return 1.0 + min(0.0, bounded(candidate) - bounded(reference)) / (2 * clip)
    raise ValueError(f"unknown graded metric {metric!r}")


def answer_margin(logprobs: torch.Tensor, answer_ids: torch.Tensor) -> float:
    """min over the answer's positions of log p(gold) - max log p(other token), from teacher-forced
    log-probabilities [n, vocab]: > 0 exactly when every gold token is the position's argmax."""
    ids = answer_ids.view(-1, 1).to(logprobs.device)
    gold = logprobs.gather(1, ids).squeeze(1)
    others = logprobs.scatter(1, ids, float("-inf")).max(dim=1).values
    return float((gold - others).min())


class LMFitness:
    def __init__(self, config, run_dir, dist: Dist, model=None, tokenizer=None):
        self.config, self.dist = config, dist
        self.metric = getattr(config, "lm_metric", "score")
        if model is None:
            from adapters.loading import load_model

            model, tokenizer = load_model(config.model, DTYPES[config.dtype], self._device(config))
        self.model, self.tokenizer = model, tokenizer
        if config.data == "builtin":
            self.source = BuiltinPrompts(tokenizer)
        else:
            self.source = LongBenchPrompts(tokenizer, config.data_dir, config.heldout_prompts, config.heldout_seed)
        self.baselines = BaselineCache(Path(run_dir) / "fullcache")
        # Prompts are fed in chunks of n_up tokens, so a member resuming from a shared prefix of n_up tokens
        # meets the same chunk boundaries as one starting from scratch (bit-identical results).
        self.prefill_chunk = config.namm_config().n_up
        self.exact = bool(getattr(config, "exact", False))
        self.current: list[PromptSet] = []
        self._current_key: tuple | None = None
        self._heldout: dict[int, list[PromptSet]] = {}

    @staticmethod
    def _device(config) -> str:
        if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
            return "cpu"
        return f"cuda:{torch.cuda.current_device()}"

    # --- running prompts ---
    def _run(self, policy, prompt: Prompt, cache=None) -> tuple[float, float]:
        """(score, cache fraction) of a greedy generation."""
        gen = greedy_generate(self.model, prompt.ids, policy, max_new_tokens=prompt.max_new_tokens,
                              eos_token_id=self.tokenizer.eos_token_id, cache=cache,
                              prefill_chunk=self.prefill_chunk, exact=self.exact)
        text = self.tokenizer.decode(gen.tokens[0], skip_special_tokens=True)
        return float(prompt.score(text)), float(gen.cache_fraction)

    def _answer(self, policy, prompt: Prompt, cache=None):
        if prompt.answer_ids is None:
            raise ValueError(f"lm_metric {self.metric!r} needs gold answer tokens; task {prompt.task!r} has none")
        return answer_logprobs(self.model, prompt.ids, prompt.answer_ids, policy, cache=cache,
                               prefill_chunk=self.prefill_chunk, exact=self.exact)

    def _member_value(self, namm, prompt_set: PromptSet, i: int) -> tuple[float, float]:
        """(value, cache fraction) of `namm` on prompt i of the set."""
        prompt = prompt_set.prompts[i]
        prefix = prompt_set.prefixes[i] if prompt_set.prefixes else None
        cache = prefix.cache_for(namm) if prefix is not None else None
        if self.metric == "score":
            return self._run(namm, prompt, cache)
        run = self._answer(namm, prompt, cache)
        value = prompt_value(self.metric, prompt_set.reference[i], run.logprobs, run.answer_ids,
                             getattr(self.config, "logprob_clip", 3.0))
        return value, run.cache_fraction

    def _prefixes(self, prompts: list[Prompt]) -> list | None:
        if not getattr(self.config, "shared_prefix", False) or not isinstance(self.model, torch.nn.Module):
            return None
        from adapters.hf.prefix import SharedPrefix

        observer = NAMM.observer(self.config.namm_config())
        return [SharedPrefix(self.model, p.ids, observer, exact=self.exact) if p.ids.shape[-1] > observer.n_up else None
                for p in prompts]

    def _full_scores(self, task: str, prompts: list[Prompt], label: str, length: int) -> float:
        key = prompt_set_key(model=self.config.model, dtype=self.config.dtype, data=self.source.name, task=task,
                             n=len(prompts), length=length, label=label)
        cached = self.baselines.get(key, len(prompts)) if self.dist.is_main else None
        flag = self.dist.broadcast(torch.tensor([1.0 if cached is not None else 0.0], dtype=torch.float64))
        if flag.item() > 0:
            values = torch.tensor(cached if cached is not None else [0.0] * len(prompts), dtype=torch.float64)
            scores = self.dist.broadcast(values).numpy()
        else:
            local = torch.zeros(len(prompts), dtype=torch.float64)
            for i in self.dist.shard(len(prompts)):
                local[i] = self._run(FullCache(), prompts[i])[0]
            scores = self.dist.sum(local).numpy()
            if self.dist.is_main:
                self.baselines.put(key, scores.tolist(), {"task": task, "label": label, "length": length,
                                                          "model": self.config.model, "data": self.source.name})
        return float(np.mean(scores))

    def _full_answers(self, prompts: list[Prompt]) -> list[torch.Tensor]:
        """Full-cache answer log-probabilities of every prompt, each rank computing its share."""
        longest = max(p.answer_ids.numel() for p in prompts)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        local = torch.zeros(len(prompts), longest, vocab, dtype=torch.float64)
        for i in self.dist.shard(len(prompts)):
            lp = self._answer(FullCache(), prompts[i]).logprobs
            local[i, : lp.shape[0]] = lp.double()
        both = self.dist.sum(local)
        return [both[i, : p.answer_ids.numel()].float() for i, p in enumerate(prompts)]

    def _prompt_set(self, stage, label: str, heldout: bool) -> list[PromptSet]:
        out = []
        for task in stage.tasks:
            if heldout:
                prompts = self.source.heldout(task, self.config.heldout_prompts, stage.prompt_length, label)
            else:
                prompts = self.source.draw(task, stage.prompts_per_task, stage.prompt_length, label)
            entry = PromptSet(task, prompts)
            if self.metric == "score":
                entry.full_mean = self._full_scores(task, prompts, label, stage.prompt_length)
            else:
                entry.reference = self._full_answers(prompts)
            entry.prefixes = self._prefixes(prompts)
            out.append(entry)
        return out

    def _combine(self, prompt_set: list[PromptSet], values_per_task: list[np.ndarray]) -> float:
        if self.metric != "score":
            return float(np.mean([np.mean(v) for v in values_per_task]))
        ratios = [float(np.mean(s)) / ps.full_mean for ps, s in zip(prompt_set, values_per_task) if ps.full_mean > 0]
        if ratios:
            return float(np.mean(ratios))
        return float(np.mean([np.mean(s) for s in values_per_task]))

    # --- the fitness interface ---
    def calibrate(self, namm: NAMM) -> None:
        if not namm.needs_calibration:
            return
        stage = self.config.stages[0]
        length = self.config.calibration_length or stage.prompt_length
        if self.dist.is_main:
            ids = [p.ids for task in stage.tasks for p in
                   self.source.draw(task, self.config.calibration_prompts, length, seed_label("calibration", self.config.seed))]
            count = calibrate_normalisation(namm, self.model, ids, exact=self.exact)
            if count == 0:
                raise ValueError(f"calibration saw no features: prompts of {length} tokens are shorter than the "
                                 f"NAMM's n_up ({namm.n_up}); raise calibration_length or lower namm.n_up")
        stats = torch.stack([namm.normaliser.mean.double(), namm.normaliser.var.double()])
        stats = self.dist.broadcast(stats)
        namm.normaliser.mean = stats[0].float()
        namm.normaliser.var = stats[1].float()

    def begin_generation(self, stage_index: int, generation: int) -> None:
        if self._current_key == (stage_index, generation):  # drawn already (the start's readouts were scored on it)
            return
        stage = self.config.stages[stage_index]
        self.current = self._prompt_set(stage, seed_label("train", self.config.seed, generation), heldout=False)
        self._current_key = (stage_index, generation)

    def evaluate(self, namm: NAMM) -> Evaluation:
        values, fractions = [], []
        for prompt_set in self.current:
            runs = [self._member_value(namm, prompt_set, i) for i in range(len(prompt_set.prompts))]
            values.append(np.array([r[0] for r in runs]))
            fractions.extend(r[1] for r in runs)
        return Evaluation(self._combine(self.current, values), float(np.mean(fractions)))

    def heldout_set(self, stage_index: int) -> list[PromptSet]:
        """The stage's held-out prompts (drawn once, collective: the full-cache references are sharded)."""
        if stage_index not in self._heldout:
            label = seed_label("heldout", self.config.heldout_seed)
            self._heldout[stage_index] = self._prompt_set(self.config.stages[stage_index], label, heldout=True)
        return self._heldout[stage_index]

    def heldout_values(self, namm: NAMM, stage_index: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Per task, `namm`'s value on each held-out prompt, and the cache fraction of every prompt (collective)."""
        prompt_set = self.heldout_set(stage_index)
        flat = [(t, i) for t, ps in enumerate(prompt_set) for i in range(len(ps.prompts))]
        local = torch.zeros(len(flat), 2, dtype=torch.float64)
        for j in self.dist.shard(len(flat)):
            t, i = flat[j]
            local[j, 0], local[j, 1] = self._member_value(namm, prompt_set[t], i)
        both = self.dist.sum(local).numpy()
        per_task, start = [], 0
        for ps in prompt_set:
            per_task.append(both[start:start + len(ps.prompts), 0])
            start += len(ps.prompts)
        return per_task, both[:, 1]

    def combine_heldout(self, stage_index: int, per_task: list[np.ndarray]) -> float:
        return self._combine(self.heldout_set(stage_index), per_task)

    def evaluate_heldout(self, namm: NAMM, stage_index: int) -> Evaluation | None:
        if self.config.heldout_prompts == 0:
            return None
        per_task, fractions = self.heldout_values(namm, stage_index)
        return Evaluation(self.combine_heldout(stage_index, per_task), float(np.mean(fractions)))
