"""What `--resume` may change in a run's config, and what it may not.

A resumed run continues one optimisation: the settings that define what is maximised or how members
are drawn (fitness, model, tasks, prompts, cache_weight, popsize, seeds, NAMM fields, ...) must stay
those of the run folder's config.yaml, or the continued run would mix two objectives under one
config.yaml. Only settings that do not change results may differ (threads, device, data_dir, how often
the held-out mean is evaluated), and stages may be lengthened or appended: a stage followed by
generations already done keeps its length, and no stage gets fewer generations than it has done.
A field the run folder's config.yaml lacks because it was written before the field existed is read as the
run was made (`RUN_FOLDER_FIELDS_BEFORE`: such a run was made on the exact attention path, `exact: true`).
"""
from __future__ import annotations

from pathlib import Path

from core.errors import UserError
from evolve.config import RUN_FOLDER_FIELDS_BEFORE, EvolveConfig, load_config

FREE_ON_RESUME = frozenset({"threads", "device", "data_dir", "eval_every"})


def check_resume_config(run_dir, config: EvolveConfig, next_generation: int) -> None:
    """Raise a UserError naming the first setting `config` changes in the run folder's config.yaml."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return
    saved = load_config(path, missing=RUN_FOLDER_FIELDS_BEFORE)
    old, new = saved.to_dict(), config.to_dict()
    hint = "; start a new run (another --out) to change it"
    for key in sorted(set(old) | set(new)):
        if key in FREE_ON_RESUME or key == "stages" or old.get(key) == new.get(key):
            continue
        raise UserError(f"{path}: field '{key}': the run was made with {old.get(key)!r}, --resume asks for "
                        f"{new.get(key)!r}{continue_hint(key, old.get(key))}{hint}")
    done_until = 0
    for i, stage in enumerate(old["stages"]):
        if i >= len(new["stages"]):
            if done_until < next_generation:
                raise UserError(f"{path}: field 'stages[{i}]': the run has started stage {stage['name']!r}; "
                                f"--resume cannot remove it{hint}")
            break
        other = new["stages"][i]
        for key in stage:
            if key != "generations" and stage[key] != other[key]:
                raise UserError(f"{path}: field 'stages[{i}].{key}': the run was made with {stage[key]!r}, "
                                f"--resume asks for {other[key]!r}{hint}")
        end = done_until + stage["generations"]
        if end < next_generation and other["generations"] != stage["generations"]:
            raise UserError(f"{path}: field 'stages[{i}].generations': stage {stage['name']!r} is finished with "
                            f"{stage['generations']} generations and later ones have run; --resume cannot make it "
                            f"{other['generations']}")
        done_in_stage = min(stage["generations"], max(0, next_generation - done_until))
        if other["generations"] < done_in_stage:
            raise UserError(f"{path}: field 'stages[{i}].generations': stage {stage['name']!r} has done "
                            f"{done_in_stage} generations; --resume cannot make it {other['generations']}")
        done_until = end
    if config.total_generations < next_generation:
        raise UserError(f"{path}: --resume asks for {config.total_generations} generations in all, but the run "
                        f"has done {next_generation}")


def continue_hint(key: str, made_with) -> str:
    """How to continue a run on a setting whose value a config file rarely states (the attention path)."""
    if key != "exact":
        return ""
    return f"; pass exact={'true' if made_with else 'false'} to continue it on the path it was made on"
