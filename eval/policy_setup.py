"""What every policy of one `eval.lm`, `eval.rl`, `eval.video` or `eval.demo` run shares: the NAMM
checkpoint and one update schedule, and how baselines get their budget.

The schedule is one `Schedule` object handed to every policy, so the NAMM and the baselines evict at
the same steps. Where the NAMM runs, its checkpoint's config.json is authoritative for the fields it
sets (n_up, update_at_prompt_end) and the baselines follow it; --n-up / --prompt-end set the rest, and
contradicting the checkpoint is an error. Without a NAMM (or with the all-zero one) the options and then
the command's defaults decide. Every policy of a run also takes one attention path (`--exact`, see
adapters.hf.attach), recorded in results and in the keys of stored results (`path_settings`).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.policies import MemoryPolicy, Schedule
from core.registry import make_policy, rule_class
from eval.lm.checks import at_least, fraction, namm_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHIPPED_NAMM = REPO / "checkpoints" / "namm-x-smollm2"
CKPT_HELP = ("NAMM checkpoint folder, or 'zeros' for the all-zero NAMM (default: checkpoints/namm-x-smollm2 "
             "in the repository, the shipped NAMM-X; checkpoints/namm-smollm2 is the paper's architecture)")
OPTIONS = {"n_up": "--n-up", "update_at_prompt_end": "--prompt-end"}


EXACT_HELP = ("compute attention as the unmodified model does (SDPA; a policy that evicts nothing is then "
              "bit-identical to it) and the observed probabilities apart; default: once for both (equal up to "
              "float rounding, faster)")


def add_exact_argument(parser) -> None:
    parser.add_argument("--exact", action="store_true", help=EXACT_HELP)


def add_arguments(parser, default: Schedule) -> None:
    """--ckpt, --budget, --n-up, --prompt-end / --no-prompt-end and --exact."""
    add_exact_argument(parser)
    parser.add_argument("--ckpt", default=None, help=CKPT_HELP)
    parser.add_argument("--budget", default="0.5",
                        help="baselines' (and a top-k NAMM's) cache budget: a fraction, or 'matched' (the NAMM runs "
                             "first and each baseline gets the NAMM's cache fraction on the same item or episode); "
                             "eval.lm, eval.rl and eval.video also take a list (0.5,0.25): one run, a table and a plot of "
                             "score against budget")
    parser.add_argument("--n-up", type=int, default=None,
                        help=f"every policy's update interval in tokens (default: the NAMM checkpoint's, "
                             f"else {default.n_up})")
    parser.add_argument("--prompt-end", action=argparse.BooleanOptionalAction, default=None,
                        help="every policy also updates when a prompt ends (default: as the NAMM checkpoint "
                             f"says, else {'yes' if default.at_prompt_end else 'no'})")


def ckpt_label(ckpt: str) -> str:
    """The checkpoint as results name it: inside the repository, relative to it."""
    if ckpt == "zeros":
        return ckpt
    path = Path(ckpt).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else ckpt


@dataclass
class PolicySetup:
    names: list[str]  # the NAMM first when budgets are matched
    ckpt: str  # a folder or "zeros"
    schedule: Schedule
    set_by: dict[str, str]  # schedule field -> where its value comes from
    budget: float | None  # None: matched
    unit: str = "item"  # what a matched budget is measured on: item or episode
    namm_keeps: float | None = None  # a top-k NAMM's checkpoint budget (None: a threshold NAMM, or no NAMM)
    exact: bool = False  # the attention path of every policy (adapters.hf.attach)

    @property
    def namm_budget(self) -> float | None:
        """What a top-k NAMM keeps in this run: the run's fixed budget, like every baseline (its checkpoint's
        own under --budget matched); None for a threshold NAMM, whose cache size is its own."""
        if self.namm_keeps is None:
            return None
        return self.namm_keeps if self.matched else self.budget

    @property
    def matched(self) -> bool:
        return self.budget is None

    def build(self, name: str, budget: float | None = None) -> MemoryPolicy:
        """A policy on the run's schedule; a baseline gets `budget`, else the run's fixed budget."""
        if name == "namm":
            namm = make_policy(name, ckpt=self.ckpt, schedule=self.schedule)
            if self.namm_budget is not None:
                namm.set_budget(self.namm_budget)
            return namm
        if name == "full":
            return make_policy(name, ckpt=self.ckpt, schedule=self.schedule)
        return make_policy(name, budget=self.budget if budget is None else budget, schedule=self.schedule)

    def schedule_line(self) -> str:
        sources = set(self.set_by.values())
        source = sources.pop() if len(sources) == 1 else "; ".join(f"{k} {v}" for k, v in self.set_by.items())
        return f"every policy: {self.schedule.describe()} (set by {source})"

    def budget_mode(self) -> str:
        if not self.matched:
            who = "every baseline and the (top-k) NAMM" if self.namm_keeps is not None else "every baseline"
            return f"fixed: {who} keeps {self.budget:.4g} of the processed tokens at each update"
        same = "in the episode of the same seed" if self.unit == "episode" else f"on the same {self.unit}"
        return (f"matched per {self.unit}: a baseline's budget on each {self.unit} is the NAMM's cache fraction "
                f"{same}, measured right after its last update (kept / processed tokens)")

    def as_json(self) -> dict:
        return {"ckpt": ckpt_label(self.ckpt), "budget": "matched" if self.matched else self.budget,
                **({"namm_budget": self.namm_budget} if self.namm_budget is not None else {}),
                "budget_mode": self.budget_mode(),
                "schedule": {"n_up": self.schedule.n_up, "update_at_prompt_end": self.schedule.at_prompt_end,
                             "set_by": dict(self.set_by), "description": self.schedule_line()},
                "exact": self.exact}

    def header(self) -> str:
        """The lines every results table starts with."""
        return f"{self.schedule_line()}\nbaselines' budget: {self.budget_mode()}{path_line(self.exact)}"


def path_line(exact: bool) -> str:
    """The table line of an --exact run (nothing on the default path)."""
    return "\nattention: exact (SDPA, as the unmodified model computes it)" if exact else ""


def rule_settings(name: str) -> dict:
    """What a stored result must also match for a baseline whose rule has been revised since results were
    first stored (empty for every rule still at revision 1, so older results stay valid)."""
    rule = rule_class(name)  # a wrapper: its scorer's
    revision = rule.revision if rule is not None else 1
    return {"rule_revision": revision} if revision > 1 else {}


def reads_attention(name: str) -> bool:
    """Whether the policy `name` observes attention probabilities: only then does the attention path change
    its results (the full cache and policies that read keys, queries or positions run SDPA on both)."""
    return name == "namm" or bool(getattr(rule_class(name), "observes", False))


def path_settings(name: str, exact: bool) -> dict:
    """What a stored result must also match for the attention path it was made on: {"exact": False} for a
    policy that reads attention on the default path, else nothing. Every result stored before the default path
    existed was made on the exact path and has no such field, so it is reused by an --exact run only."""
    return {"exact": False} if reads_attention(name) and not exact else {}


def matched_budget(namm_fraction: float) -> float:
    """A baseline's budget from the NAMM's measured fraction (a budget is in (0, 1])."""
    if not math.isfinite(namm_fraction):
        raise ValueError(f"the NAMM's cache fraction is {namm_fraction}")
    return max(1e-6, min(1.0, float(namm_fraction)))


def resolve(args, names: list[str], default: Schedule, unit: str = "item") -> PolicySetup:
    """Check --ckpt, --budget, --n-up and --prompt-end (UserErrors, before any model loads) and fix the
    run's schedule."""
    at_least("--n-up", args.n_up, 1)
    matched = str(args.budget) == "matched"
    if matched and "namm" not in names:
        raise UserError("--budget matched needs the namm policy in --policies (the baselines get its cache fraction)")
    budget = None if matched else fraction("--budget", args.budget)
    ckpt = args.ckpt or str(SHIPPED_NAMM)
    fixed, namm_keeps = {}, None
    if ckpt != "zeros" and ("namm" in names or args.ckpt is not None):
        namm = namm_checkpoint("--ckpt", ckpt)
        fixed = namm.fixed_schedule if "namm" in names else {}
        if "namm" in names and namm.config.selection == "topk":
            namm_keeps = namm.config.budget
    given = {"n_up": args.n_up, "update_at_prompt_end": args.prompt_end}
    values, set_by = {}, {}
    for key, option in OPTIONS.items():
        if key in fixed:
            if given[key] is not None and given[key] != fixed[key]:
                shown = option if key == "n_up" else ("--prompt-end" if given[key] else "--no-prompt-end")
                raise UserError(f"{shown}: the NAMM checkpoint {ckpt_label(ckpt)} sets {key} {fixed[key]} in its "
                                "config.json, and every policy follows the NAMM's schedule; leave the option out "
                                "(or evaluate a copy of the checkpoint whose config.json says otherwise)")
            values[key], set_by[key] = fixed[key], "the NAMM checkpoint's config.json"
        elif given[key] is not None:
            values[key], set_by[key] = given[key], "the command line"
        else:
            values[key] = default.n_up if key == "n_up" else default.at_prompt_end
            set_by[key] = "the default"
    if matched:
        names = ["namm"] + [n for n in names if n != "namm"]
    return PolicySetup(list(names), ckpt, Schedule(values["n_up"], values["update_at_prompt_end"]), set_by,
                       budget, unit, namm_keeps, bool(getattr(args, "exact", False)))


def namm_settings(ckpt_sha256: str | None, namm_budget: float | None) -> dict:
    """What identifies the NAMM's results in a run: its checkpoint and, for a top-k NAMM, its budget."""
    settings = {"ckpt_sha256": ckpt_sha256}
    if namm_budget is not None:
        settings["budget"] = float(namm_budget)
    return settings


def budgets_of(text) -> list[str]:
    """The budgets a --budget names: one value ("matched" or a fraction) or a list of fractions."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) == 1:
        return parts
    if "matched" in parts:
        raise UserError(f"--budget {text}: 'matched' cannot be part of a list (give fractions, e.g. 0.5,0.25)")
    values = [fraction("--budget", p) for p in parts]
    if len(set(values)) != len(values):
        raise UserError(f"--budget {text}: a budget is listed twice")
    return parts


def one_budget(args, budget: str) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "budget": budget})
