"""What a stored prediction was made with, so that a resumed `eval.lm` run reuses only its own rows.

Every row of OUT/preds/<policy>/<task>.jsonl carries "settings": the model (for a local folder also its
config files' hash and its weight files' sizes and times), the benchmark and its
prompt settings (builtin: length and seed; official benchmarks: the data folder and --max-length; ChouBun
also the version of the project's prompt templates), the
policy and what changes its output (the NAMM checkpoint's content hash; a baseline's budget; the run's
update schedule: n_up and whether policies also update at the prompt's end). A row is reused only when its
settings equal the current run's; other rows stay in the file untouched (so two settings can share an --out-dir) and are ignored.
Rows written before settings were recorded are recomputed.

`read_predictions` also repairs the file a kill can leave: a last line without its newline (a torn
write) is cut off before anything is appended, so the recomputed row starts on a line of its own.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from eval.lm.jsonl import DataError

NAMM_FILES = ("config.json", "model.safetensors")


def checkpoint_sha256(ckpt: str | None) -> str:
    """Content hash of a NAMM checkpoint folder ("zeros" for the all-zero NAMM)."""
    if ckpt is None or ckpt == "zeros":
        return "zeros"
    digest = hashlib.sha256()
    for name in NAMM_FILES:
        digest.update(name.encode() + b"\0")
        digest.update((Path(ckpt) / name).read_bytes())
    return digest.hexdigest()


def prediction_settings(args, policy: str, budget, ckpt_sha256: str | None, schedule) -> dict:
    """Everything that changes one prediction of `policy` in this run (the task and item are in the id);
    `schedule` is the run's `Schedule`."""
    from eval.policy_results import model_identity
    from eval import policy_setup

    settings = {**model_identity(args.model), "benchmark": args.benchmark, "policy": policy}
    settings.update(policy_setup.rule_settings(policy))
    if args.benchmark == "builtin":
        settings.update(length=args.length, seed=args.seed)
    else:
        settings.update(data_dir=str(Path(args.data_dir).resolve()), max_length=args.max_length)
    if args.benchmark == "choubun":  # the project's own templates: rows made with the earlier ones are not reused
        from eval.lm.choubun_config import TEMPLATES_VERSION

        settings["choubun_templates"] = TEMPLATES_VERSION
    if getattr(args, "protocol", "whole-prompt") != "whole-prompt":
        settings["protocol"] = args.protocol
    if policy != "full":
        settings.update(n_up=schedule.n_up, update_at_prompt_end=schedule.at_prompt_end)
    if policy == "namm":
        settings.update(policy_setup.namm_settings(ckpt_sha256, budget))
    elif policy != "full":
        settings["budget"] = float(budget)
    return json.loads(json.dumps(settings))  # as it reads back from the file


def read_predictions(path: Path, settings=None) -> dict[str, dict]:
    """Rows of a predictions file by id, keeping only those made with `settings` (all when None); `settings`
    may also be a function of the row's id (settings that differ by item, such as matched budgets).

    A torn last line is truncated away; any other bad line names the file and the line."""
    path = Path(path)
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        data = data[:cut]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text; move the file away to recompute its predictions") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg}); only a torn last line is repaired "
                            "on resume") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        for field in ("id", "prediction", "cache_fraction", "seconds"):
            if field not in row:
                raise DataError(f"{path}:{number}: missing field '{field}'")
        wanted = settings(row["id"]) if callable(settings) else settings
        if settings is None or (wanted is not None and row.get("settings") == wanted):
            done[row["id"]] = row
    return done
