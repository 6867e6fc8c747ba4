"""What a stored prediction was made with, so that a resumed `eval.lm` run reuses only its own rows.

Every row of OUT/preds/<policy>/<task>.jsonl carries "settings": the model (for a local folder also its
config files' hash and its weight files' sizes and times), the benchmark and its
prompt settings (builtin: length and seed; official benchmarks: the data folder and --max-length; ChouBun
also the version of the project's prompt templates), the
policy and what changes its output (the NAMM checkpoint's content hash; a baseline's budget; the run's
update schedule: n_up and whether policies also update at the prompt's end; `exact: false` for a policy that
reads attention on the default attention path, a row without it having been made on the exact path, as every
row stored before the field existed was), and `item_sha256`, a hash of
the item it answered (its prompt text and gold answers), so that an item whose data was edited in place under
the same id is answered again. A row is reused only when its settings equal the current run's; other rows stay in the file untouched (so two settings can share an --out-dir) and are ignored.
Rows written before settings (or before item hashes) were recorded are recomputed.

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


def item_sha256(text: str, answers) -> str:
    """What one prediction answered: the prompt text and the gold answers (JSON, keys sorted)."""
    digest = hashlib.sha256(text.encode("utf-8") + b"\0")
    digest.update(json.dumps(answers, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


ROW_TYPES = {"id": (str, "a string"), "prediction": (str, "a string"), "cache_fraction": ((int, float), "a number"),
             "seconds": ((int, float), "a number")}
OPTIONAL_ROW_TYPES = {"fraction_at_update": ((int, float), "a number"), "settings": (dict, "an object"),
                      "prompt_tokens": (int, "a whole number"), "processed_tokens": (int, "a whole number")}


def check_row(path: Path, number: int, row: dict) -> None:
    """The fields a run reads from a stored prediction, with their types; a DataError names file, line, field."""
    import math

    for fields, required in ((ROW_TYPES, True), (OPTIONAL_ROW_TYPES, False)):
        for field, (types, what) in fields.items():
            if field not in row:
                if required:
                    raise DataError(f"{path}:{number}: missing field '{field}'")
                continue
            value = row[field]
            if isinstance(value, bool) or not isinstance(value, types) or (
                    isinstance(value, float) and not math.isfinite(value)):
                raise DataError(f"{path}:{number}: field '{field}' must be {what}, got {value!r:.60}; move the "
                                "file away to recompute its predictions")
    for field in ("cache_fraction", "fraction_at_update"):
        if field in row and not 0.0 <= row[field] <= 1.0:
            raise DataError(f"{path}:{number}: field '{field}' must be a fraction in [0, 1], got {row[field]!r}")


def prediction_settings(args, policy: str, budget, ckpt_sha256: str | None, schedule) -> dict:
    """Everything that changes one prediction of `policy` in this run (the task and item are in the id);
    `schedule` is the run's `Schedule`."""
    from eval.policy_results import model_identity
    from eval import policy_setup

    settings = {**model_identity(args.model), "benchmark": args.benchmark, "policy": policy}
    if getattr(args, "dtype", "float32") != "float32":  # rows stored before --dtype existed were float32
        settings["dtype"] = args.dtype
    settings.update(policy_setup.rule_settings(policy))
    settings.update(policy_setup.path_settings(policy, getattr(args, "exact", False)))
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


def read_predictions(path: Path, settings=None, repair: bool = True) -> dict[str, dict]:
    """Rows of a predictions file by id, keeping only those made with `settings` (all when None); `settings`
    may also be a function of the row's id (settings that differ by item, such as matched budgets).

    A torn last line is truncated away (with `repair`; without, it is only left out: a check made before the
    output folder is locked must not cut a line another run is writing); any other bad line names the file
    and the line."""
    path = Path(path)
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    data = path.read_bytes()
    if data and not data.endswith(b"\n") and not repair:
        data = data[:data.rfind(b"\n") + 1]
    elif data and not data.endswith(b"\n"):
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
        check_row(path, number, row)
        wanted = settings(row["id"]) if callable(settings) else settings
        if settings is None or (wanted is not None and row.get("settings") == wanted):
            done[row["id"]] = row
    return done
