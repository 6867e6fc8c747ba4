"""Any memory policy by name: "full", "namm" (a checkpoint folder), a baseline, or adakv(<baseline>).

It sits above both core/namm.py and core/policies, which never import it back."""
from __future__ import annotations

from core.namm import NAMM
from core.policies import BASELINES, AdaKV, FullCache, MemoryPolicy, Schedule


def wrapped_names() -> tuple[str, ...]:
    """The wrapper policies' names over every baseline: adakv(h2o), adakv(snapkv), ..."""
    return tuple(f"adakv({name})" for name in BASELINES)


def scorer_name(name: str) -> str:
    """The rule a policy name runs: a wrapper's scorer (adakv(snapkv) -> snapkv), else the name itself."""
    return name[len("adakv("):-1] if name.startswith("adakv(") and name.endswith(")") else name


def rule_class(name: str) -> type[MemoryPolicy] | None:
    """The baseline class behind a name, a wrapper's included; None for full, namm and unknown names."""
    return BASELINES.get(scorer_name(name))


def make_policy(name: str, budget=None, ckpt: str | None = None, schedule: Schedule | None = None,
                **kwargs) -> MemoryPolicy:
    """Build a policy by name: "full", "namm" (needs `ckpt`, or "zeros"), or a baseline with `budget`.

    `schedule`, when given, is the one object every policy of a comparison updates on (a NAMM refuses one
    that contradicts what its checkpoint's config.json sets)."""
    if schedule is not None:
        kwargs["schedule"] = schedule
    if name == "full":
        return FullCache(**kwargs)
    if name == "namm":
        if ckpt is None:
            raise ValueError("policy 'namm' needs a checkpoint folder (or 'zeros' for the all-zero NAMM)")
        namm = NAMM.zeros() if ckpt == "zeros" else NAMM.from_pretrained(ckpt)
        if schedule is not None:
            namm.use_schedule(schedule)
        return namm
    if scorer_name(name) != name:  # a head-adaptive budget over a scorer
        return AdaKV(make_policy(scorer_name(name), budget, ckpt, **kwargs))
    if name not in BASELINES:
        raise ValueError(f"unknown policy {name!r}; choose from full, namm, {', '.join(BASELINES)}")
    return BASELINES[name](budget if budget is not None else 0.5, **kwargs)
