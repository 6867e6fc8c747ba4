"""Rebuild the SmolLM2 LLaVA-NeXT-Video (checkpoints/llava-video-smollm2) from nothing: the language stage's
phases (zoo/video/lm_stage.py, resumable), then the vision stage (zoo/video/vision_stage.py), which writes
the model folder with the adapters (stored in bfloat16). Deterministic for a given thread count; rerunning continues where a
phase stopped.

    python -m zoo.video.build_smol --work runs/smol-build --out checkpoints/llava-video-smollm2 --threads 2 --overwrite

--work is this command's resumable folder; --out (by default the shipped model) is refused when it holds
anything, unless --overwrite is given: the model folder is then built beside it and swapped in whole.

PHASES is the recipe the shipped model was built with; its time on 2 cores is in the README.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
from pathlib import Path

from core.atomic import write_bytes_atomic
from core.destination import add_overwrite_argument, check_destination, replace_folder
from core.errors import cli_main, on_interrupt

from . import lm_stage, vision_stage

# Each phase continues the adapters of the one before (one stage folder); `steps` is the total to reach.
# Questions are asked without options and answered in words (eval.video --answer-format words): with the
# options listed, the 135M model stayed at chance on the option letters after 2.5k questions (see the README).
# Phase 1 teaches the questions on compact frames (3 tokens: caption, then background); phase 2 draws each
# video's frame length from 3 to 25 tokens (25 is what the vision tower emits: trained at 3 only, the model
# answers needle at chance on 25-token frames) and asks more count and order questions per video.
PHASES = (
    {"steps": 150, "segments": "8,32", "tokens-per-frame": "3", "lr": 5e-4},
    {"steps": 300, "segments": "12,32", "tokens-per-frame": "3,25", "lr": 5e-4, "extra": "count:3,order:2"},
)
COMMON = {"word-fraction": 1.0, "frames-per-segment": 2, "videos-per-step": 4, "eval-every": 50, "eval-videos": 20,
          "eval-segments": 32, "rank": 16, "alpha": 32.0, "seed": 0}
VISION_STEPS = 400
LOG_COPY = "lm_stage_log.jsonl"


def phase_argv(folder: Path, phase: dict, threads: int) -> list[str]:
    args = {**COMMON, **phase}
    return ["--out", str(folder), "--threads", str(threads)] + [x for k, v in args.items() for x in (f"--{k}", str(v))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/smol-build"), help="the language stage's folder")
    ap.add_argument("--out", type=Path, default=Path("checkpoints/llava-video-smollm2"))
    ap.add_argument("--threads", type=int, default=2)
    add_overwrite_argument(ap)
    a = ap.parse_args(argv)
    check_destination(a.out, a.overwrite, "--out folder")
    on_interrupt(f"the language stage's progress is kept in {a.work}; {a.out} is unchanged; "
                 f"rerun the same command to continue")
    for phase in PHASES:
        if lm_stage.main(phase_argv(a.work, phase, a.threads)) != 0:
            return 1

    def fill(folder: Path) -> None:
        vision_stage.write_model(folder, VISION_STEPS, threads=a.threads, lm_stage=a.work)
        ship(a.work, folder)

    replace_folder(a.out, fill)
    print(json.dumps({"model": str(a.out), "phases": len(PHASES)}))
    return 0


def ship(work: Path, out: Path) -> None:
    """The adapters in bfloat16 (half the bytes; the model is evaluated as shipped) and the language stage's
    log next to them (how each phase trained and scored)."""
    from .smol_llava import ADAPTER_FILE

    lm_stage.bf16_copy(out / ADAPTER_FILE, out / ADAPTER_FILE)
    write_bytes_atomic(out / LOG_COPY, (work / lm_stage.LOG).read_bytes())


if __name__ == "__main__":
    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
