"""A starting mean for CMA-ES: a NAMM fitted by gradient descent to reproduce a baseline's keep/evict
decisions (not the reference, which starts from zeros; say so when a run uses it).

The NAMM's features (attention spectrogram EMA and age) can express what H2O, TOVA and recency
compute. `python -m evolve.distill` runs training prompts under a teacher baseline while the NAMM's
observer watches the same attention; at every update it records each layer's NAMM features and the
tokens the teacher keeps, then fits the BAM scorer so that score >= 0 marks a kept token (logistic
loss). The frozen normalisation comes from the evolution config's own calibration, so the result can
be passed as `init_from` to the same config.

    python -m evolve.distill --config configs/evolve_smollm2_cpu.yaml --teacher tova_per_head --budget 0.4 \\
        --n 6 --out runs/distill/tova

--out must be a new or empty folder (or pass --overwrite: the folder is then replaced whole, atomically).
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.bam import bam_scores
from core.destination import add_overwrite_argument, check_destination, replace_folder
from core.errors import UserError, cli_main, on_interrupt
from core.memory import LayerMemory
from core.namm import NAMM
from core.policies import BASELINES
from core.policies.base import MemoryPolicy


class Imitation(MemoryPolicy):
    """Acts as `teacher` and records, at each update, the student's features and the teacher's choice."""

    observes = True

    def __init__(self, teacher, student: NAMM, record_prob: float = 1.0, seed: int = 0) -> None:
        if teacher.n_up != student.n_up:
            raise ValueError(f"teacher n_up {teacher.n_up} differs from the student's {student.n_up}")
        super().__init__(teacher.n_up, teacher.update_at_prompt_end)
        self.teacher, self.student = teacher, student
        self.record_prob = record_prob
        self.rng = np.random.default_rng(seed)
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []  # ([H, P, d] features, [H, P] kept)

    def observe(self, mem: LayerMemory, probs: torch.Tensor, rows_left: int) -> None:
        self.student.observe(mem, probs, rows_left)
        if self.teacher.observes:
            self.teacher.observe(mem, probs, rows_left)

    def select(self, mem: LayerMemory):
        feats = self.student.features(mem)
        keep = self.teacher.select(mem)
        if self.rng.random() < self.record_prob:
            label = torch.ones(feats.shape[:3], dtype=torch.bool)
            if keep is not None:
                label = torch.zeros(feats.shape[:3], dtype=torch.bool)
                label.scatter_(2, keep.cpu(), True)
            self.records.append((feats[0].detach().float().cpu().clone(), label[0]))
        return keep


def fit(student: NAMM, records, steps: int = 400, lr: float = 3e-3, batch: int = 8, seed: int = 0,
        init_std: float = 0.02, log=None) -> dict:
    """Fit `student.params` to the records by logistic regression of keep on the BAM score."""
    g = torch.Generator().manual_seed(seed)
    params = (init_std * torch.randn(student.n_params, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([params], lr=lr)
    shape, hidden = student.config.bam, student.config.bam_hidden
    order = np.random.default_rng(seed)
    history = []
    for step in range(steps):
        opt.zero_grad()
        total, count = 0.0, 0
        unflat = shape.unflatten(params)
        for i in order.choice(len(records), size=min(batch, len(records)), replace=False):
            feats, label = records[i]
            scores = bam_scores(feats, unflat, hidden)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(scores, label.float(), reduction="sum")
            loss.backward(retain_graph=True)
            total += float(loss.detach())
            count += label.numel()
        for p in opt.param_groups[0]["params"]:
            p.grad /= max(1, count)
        opt.step()
        history.append(total / max(1, count))
        if log and (step % 50 == 0 or step == steps - 1):
            log(f"step {step}: loss {history[-1]:.4f}")
    student.set_params(params.detach().numpy())
    return {"loss": history}


@torch.no_grad()
def agreement(student: NAMM, records) -> dict:
    """How often score >= 0 matches the teacher's keep, and the share of tokens each keeps."""
    unflat = student.config.bam.unflatten(student.params)
    same = kept_student = kept_teacher = n = 0
    for feats, label in records:
        keep = bam_scores(feats, unflat, student.config.bam_hidden) >= 0
        same += int((keep == label).sum())
        kept_student += int(keep.sum())
        kept_teacher += int(label.sum())
        n += label.numel()
    return {"agreement": same / n, "student_keep": kept_student / n, "teacher_keep": kept_teacher / n, "tokens": n}


def collect(model, prompts, teacher_factory, student: NAMM, record_prob: float, seed: int, progress: bool = True,
            exact: bool = False):
    from tqdm import tqdm

    from adapters.hf.generation import greedy_generate

    records = []
    for i, prompt in enumerate(tqdm(prompts, desc="teacher runs", disable=not progress)):
        policy = Imitation(teacher_factory(), student, record_prob, seed + i)
        greedy_generate(model, prompt.ids, policy, max_new_tokens=1, exact=exact)
        records.extend(policy.records)
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evolve.distill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the evolution config the result will start")
    # a teacher that reads queries before RoPE (expected_attention) would need Imitation to forward them, and
    # kvzip updates only after a context reconstruction, never at the streaming updates distillation records
    parser.add_argument("--teacher", required=True,
                        choices=sorted(n for n, cls in BASELINES.items()
                                       if not cls.observes_queries and not getattr(cls, "replays_context", False))
                        + ["kvzip", "oracle"],
                        help="a baseline whose decisions the paper NAMM imitates; or, for a NAMM-X config, oracle "
                             "(its linear readout fitted to the attention the gold answer pays) or kvzip (fitted "
                             "to KVzip's scores of each prompt as one context): evolve.distill_readout")
    parser.add_argument("--budget", type=float, default=0.5, help="the teacher's cache fraction")
    parser.add_argument("--n", type=int, default=6, help="prompts per task of the config's last stage")
    parser.add_argument("--length", type=int, default=None, help="prompt length (default: the last stage's)")
    parser.add_argument("--record-prob", type=float, default=0.35, help="share of (layer, update) pairs kept")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compare", default=None,
                        help="oracle: a NAMM-X checkpoint (same features) whose readout's recall is reported too")
    parser.add_argument("--out", required=True, help="the folder for the fitted NAMM (new or empty)")
    add_overwrite_argument(parser)
    args = parser.parse_args(argv)
    if args.n < 1 or args.steps < 1 or not 0 < args.budget <= 1 or not 0 < args.record_prob <= 1:
        parser.error("--n and --steps must be positive, --budget and --record-prob in (0, 1]")
    out = check_destination(args.out, args.overwrite, "--out folder")
    on_interrupt(f"nothing was written to {out}; rerun the same command to start again")
    with tempfile.TemporaryDirectory(prefix="namm-distill-") as scratch:  # the fitness's cache, not the result
        return _distill(args, out, Path(scratch))


def _distill(args, out: Path, scratch: Path) -> int:
    from evolve.config import load_config
    from evolve.distributed import Dist
    from evolve.lm_fitness import LMFitness
    from evolve.prompts import seed_label

    config = load_config(args.config)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    student = NAMM(config.namm_config())
    fits_readout = args.teacher in ("oracle", "kvzip")
    if fits_readout != (student.namm_x is not None):
        raise UserError(f"--teacher {args.teacher}: oracle and kvzip fit a NAMM-X readout and the baselines' "
                        f"decisions fit the paper's scorer, but {args.config} sets features: {student.config.features}")
    fitness = LMFitness(config, scratch, Dist())
    fitness.calibrate(student)  # the same frozen normalisation as the evolution run of this config
    stage = config.stages[-1]
    length = args.length or stage.prompt_length
    prompts = [p for task in stage.tasks
               for p in fitness.source.draw(task, args.n, length, seed_label("distill", args.seed))]
    if fits_readout:
        from adapters.hf.kvzip import replay_prompt
        from evolve.distill_readout import distill_linear_readout

        compare = None
        if args.compare:
            other = NAMM.from_pretrained(args.compare)
            if other.config.feature_names != student.config.feature_names or \
                    other.config.readout_hidden != student.config.readout_hidden:
                raise UserError(f"--compare {args.compare}: its readout reads other features than {args.config}'s")
            compare = {Path(args.compare).name: other.params}
        replay = replay_prompt(fitness.tokenizer) if args.teacher == "kvzip" else None
        report = distill_linear_readout(fitness.model, prompts, student, args.seed, config.exact, compare=compare,
                                        replay_prompt=replay)
        report.update(teacher=args.teacher, tasks=list(stage.tasks), length=length,
                      seconds=round(time.perf_counter() - started, 1),
                      note=f"init_from for CMA-ES (init_readout: null): fitted to {args.teacher}, not evolved")
        save_and_print(student, report, out)
        return 0
    n_up = student.n_up
    teacher_cls = BASELINES[args.teacher]
    records = collect(fitness.model, prompts, lambda: teacher_cls(args.budget, n_up=n_up, update_at_prompt_end=False),
                      student, args.record_prob, args.seed, exact=config.exact)
    if not records:
        raise SystemExit("the teacher never updated: prompts are shorter than n_up")
    split = max(1, len(records) // 5)
    order = np.random.default_rng(args.seed).permutation(len(records))
    held, train = [records[i] for i in order[:split]], [records[i] for i in order[split:]]
    result = fit(student, train, args.steps, args.lr, seed=args.seed, log=print)
    report = {"teacher": args.teacher, "budget": args.budget, "tasks": list(stage.tasks), "length": length,
              "prompts": len(prompts), "records": len(records), "train": agreement(student, train),
              "heldout": agreement(student, held), "final_loss": result["loss"][-1], "steps": args.steps,
              "lr": args.lr, "seed": args.seed, "seconds": round(time.perf_counter() - started, 1),
              "note": "init_from for CMA-ES: fitted to the teacher's decisions, not evolved"}

    save_and_print(student, report, out)
    return 0


def save_and_print(student: NAMM, report: dict, out: Path) -> None:
    def fill(folder: Path) -> None:
        student.save_pretrained(folder)
        (folder / "distill.json").write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")

    replace_folder(out, fill)
    print(json.dumps({k: v for k, v in report.items() if k != "note"}, indent=1))


if __name__ == "__main__":
    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
