"""Checks of `eval.lm run`'s arguments, all made before the model loads, and of the prompts once tokenised.

Each failure is a UserError naming the option (or file) and what is wrong, printed as one line.
"""
from __future__ import annotations

import re
from pathlib import Path

from core.errors import UserError

BENCHMARKS = ("builtin", "longbench", "infinitebench", "choubun")
# becomes a file name: no separators, no "..", no "."; parentheses for wrappers such as adakv(snapkv)
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.()-]*$")


def known_tasks(benchmark: str) -> tuple[str, ...]:
    if benchmark == "builtin":
        from eval.lm.builtin_tasks import TASKS
        return tuple(TASKS)
    if benchmark == "longbench":
        from eval.lm.longbench_config import DATASET2PROMPT
        return tuple(DATASET2PROMPT)
    if benchmark == "choubun":
        from eval.lm.choubun_config import DATASET2PROMPT
        return tuple(DATASET2PROMPT)
    from eval.lm.infinitebench_config import MAX_NEW_TOKENS
    return tuple(MAX_NEW_TOKENS)


def policy_names() -> tuple[str, ...]:
    from core.policies import BASELINES
    from core.registry import wrapped_names
    return ("full", "namm", *BASELINES, *wrapped_names())


REPLAYING = ("kvzip", "adakv(kvzip)")  # compress a whole context after reconstructing it (adapters.hf.kvzip)


def refuse_replaying(names, why: str) -> None:
    """One line where kvzip cannot run (`why`: what compresses here instead of a whole context)."""
    for name in names:
        if name in REPLAYING:
            raise UserError(f"--policies {name}: kvzip compresses a whole context once, after reconstructing it, "
                            f"and cannot run here ({why}); it runs in eval.lm --protocol query-agnostic")


def name_list(option: str, text: str, known) -> list[str]:
    """A comma-separated list of names, each known (and so safe as a file name), none twice."""
    names = [n.strip() for n in str(text).split(",")]
    if not names or any(not n for n in names):
        raise UserError(f"{option}: expected comma-separated names, got {text!r}")
    for n in names:
        if not SAFE_NAME.match(n) or n not in known:
            raise UserError(f"{option}: unknown name {n!r}; choose from {', '.join(known)}")
    if len(set(names)) != len(names):
        raise UserError(f"{option}: a name is listed twice in {text!r}")
    return names


def at_least(option: str, value, minimum: int) -> None:
    if value is not None and value < minimum:
        raise UserError(f"{option}: must be at least {minimum}, got {value}")


def fraction(option: str, text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UserError(f"{option}: expected a fraction in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise UserError(f"{option}: expected a fraction in (0, 1], got {text!r}")
    return value


def namm_checkpoint(option: str, ckpt):
    """The NAMM in the folder, refused unless its config and weights agree (sizes included)."""
    if ckpt is None:
        return None
    from core.namm import NAMM
    try:
        return NAMM.from_pretrained(ckpt)
    except (OSError, ValueError, KeyError, TypeError) as err:  # UserError included
        raise UserError(f"{option} {ckpt}: not a usable NAMM checkpoint: {err}") from None


PROTOCOLS = ("whole-prompt", "query-agnostic")


def validate_run_args(args) -> list[str]:
    """Every argument but the policies' own (eval.policy_setup checks those); returns the policy names."""
    if args.benchmark not in BENCHMARKS:
        raise UserError(f"--benchmark: unknown {args.benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    name_list("--tasks", args.tasks, known_tasks(args.benchmark))
    policies = name_list("--policies", args.policies, policy_names())
    at_least("--n", args.n, 1)
    at_least("--length", args.length, 64)
    at_least("--max-length", args.max_length, 1)
    at_least("--threads", args.threads, 1)
    at_least("--seed", args.seed, 0)
    protocol = getattr(args, "protocol", "whole-prompt")
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol: unknown {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    if protocol != "query-agnostic":
        refuse_replaying(policies, "the whole-prompt protocol compresses prompts with their question")
    if protocol == "query-agnostic" and args.benchmark != "builtin":
        raise UserError("--protocol query-agnostic needs items split into context and question: only the "
                        "builtin tasks are, for now")
    if args.benchmark != "builtin":
        if not args.data_dir:
            raise UserError(f"--benchmark {args.benchmark} needs --data-dir with the official files")
        if not Path(args.data_dir).is_dir():
            raise UserError(f"--data-dir {args.data_dir}: folder not found")
    return policies


def context_length(model) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None) if config is not None else None


def check_prompt_lengths(items, tokenizer, model, benchmark: str) -> None:
    """Refuse prompts that with their answer do not fit the model's context (they would run and score 0)."""
    limit = context_length(model)
    if not limit:
        return
    too_long = []
    for item in items:
        need = len(tokenizer(item.text, return_tensors="pt").input_ids[0]) + item.max_new_tokens
        if need > limit:
            too_long.append((item.id, need))
    if too_long:
        worst = max(too_long, key=lambda x: x[1])
        hint = "a smaller --length" if benchmark == "builtin" else "--max-length to middle-truncate the prompts"
        raise UserError(f"{len(too_long)} of {len(items)} prompts do not fit the model's context of {limit} tokens "
                        f"with their answer (longest: {worst[0]}, {worst[1]} tokens); pass {hint}")
