"""Stage 1 of the SmolLM2 LLaVA: teach the language model the video questions, with frames given as the
tokens its projector will later emit (zoo/video/frame_text.py). Low-rank adapters (zoo/video/lora.py)
are trained on the letter of the right option; the base weights stay as shipped.

Resumable: `--out` holds the adapters, the optimiser, the step and a log; running again continues,
and a later phase may change the segment range or the frame length (a curriculum).

    python -m zoo.video.lm_stage --out runs/video-lm --steps 400 --segments 8,12 --tokens-per-frame 3

`--tokens-per-frame 3,25` draws each video's frame length from that range (the model answers at 3 tokens a
frame and fails at 25 when it only trained at 3); evaluation uses the range's top.

A folder holding only the adapters and the log (a committed `--copy-to` copy) continues too, with a new
optimiser. Any other non-empty `--out` is refused unless --overwrite is given, which starts afresh (the old
folder is removed); `--copy-to` refuses a folder that is not such a copy unless --overwrite is given, and
replaces it whole.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from core.atomic import write_bytes_atomic
from core.destination import add_overwrite_argument, check_destination, discard_folder, replace_folder
from core.errors import on_interrupt

from .frame_text import FrameText, letter_ids, prompt_parts, word_ids, word_prompt_parts
from .lora import add_lora, load_lora_state_dict, lora_state_dict
from .scenes import TASKS, every_question, make_video

ADAPTER = "adapter.safetensors"
STATE = "train_state.pt"
LOG = "log.jsonl"
SETTINGS = "settings.json"


MODES = ("letter", "word")


def examples(rng: random.Random, tokenizer, frames: FrameText, n_segments: int, frames_per_segment: int,
             mode: str = "letter", extra: dict[str, int] | None = None):
    """One generated video's questions as (prefix ids, question ids, option ids, answer index, task): one of
    each type, then for each task in `extra` up to that many more of it (zoo.video.scenes.every_question); the
    prefix (chat template start and the video) is the same for all. `mode` "letter" asks with options shown
    and the letter answers (MLVU); "word" asks without options and the answer is the option's word."""
    for _ in range(100):  # short videos sometimes cannot hold every question type: draw another
        try:
            spec, questions = make_video(rng, "train", n_segments, frames_per_segment, 1)
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError(f"no video of {n_segments} segments holds every question type")
    video = frames.video_ids(spec.segments, frames_per_segment)
    asked = [questions[t] for t in TASKS]
    for task, most in (extra or {}).items():
        more = [q for q in every_question(spec, task) if q["question"] != questions[task]["question"]]
        asked += rng.sample(more, min(most, len(more)))
    out = []
    for q in asked:
        task = q["question_type"]
        if mode == "letter":
            (before, after), options = prompt_parts(tokenizer, q["question"], q["candidates"]), letter_ids(tokenizer, 4)
        else:
            (before, after), (shared, options) = word_prompt_parts(tokenizer, q["question"]), word_ids(tokenizer, q["candidates"])
            after = after + shared
        out.append((before + video, after, options, q["candidates"].index(q["answer"]), task))
    return out


def shared_prefix_logits(model, prefix: list[int], suffixes: list[list[int]], option_ids: list[list[int]]) -> torch.Tensor:
    """[B, n_options] next-token logits of each suffix's option tokens after prefix + that suffix. The prefix is
    computed once and its keys and values are shared by the B suffixes (right padded), gradients included."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model.model(input_ids=torch.tensor([prefix]), past_key_values=cache, use_cache=True)
    b, longest = len(suffixes), max(map(len, suffixes))
    for layer in cache.layers:
        layer.keys = layer.keys.expand(b, -1, -1, -1)
        layer.values = layer.values.expand(b, -1, -1, -1)
    ids = torch.zeros(b, longest, dtype=torch.long)
    mask = torch.zeros(b, len(prefix) + longest, dtype=torch.long)
    mask[:, : len(prefix)] = 1
    for i, s in enumerate(suffixes):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, len(prefix) : len(prefix) + len(s)] = 1
    hidden = model.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).last_hidden_state
    last = hidden[torch.arange(b), torch.tensor([len(s) - 1 for s in suffixes])]
    return model.lm_head(last).gather(1, torch.tensor(option_ids))


def video_logits(model, ex: list[tuple]) -> torch.Tensor:
    """[4, n_options] letter logits of one video's questions (`examples` output)."""
    prefix = ex[0][0]
    if any(e[0] != prefix for e in ex):
        raise ValueError("the questions of one video must share their prefix")
    return shared_prefix_logits(model, prefix, [e[1] for e in ex], [e[2] for e in ex])


@torch.no_grad()
def evaluate(model, tokenizer, frames: FrameText, n_videos: int, n_segments: int,
             frames_per_segment: int, seed: int, mode: str = "letter") -> dict[str, float]:
    rng = random.Random(seed)
    hits = {t: 0 for t in TASKS}
    for _ in range(n_videos):
        ex = examples(rng, tokenizer, frames, n_segments, frames_per_segment, mode)
        pred = video_logits(model, ex).argmax(-1)
        for (_, _, _, ans, task), p in zip(ex, pred.tolist()):
            hits[task] += int(p == ans)
    return {t: hits[t] / n_videos for t in TASKS}


def decoder_adapter(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The adapters of a stage folder with keys relative to the decoder (`layers.N...`, as
    zoo.video.smol_llava loads them) and the description the model folder records."""
    from safetensors.torch import load_file

    path = Path(folder) / ADAPTER
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {ADAPTER} (not a zoo.video.lm_stage folder)")
    state = {k.removeprefix("model."): v for k, v in load_file(str(path)).items()}
    settings = json.loads((Path(folder) / SETTINGS).read_text())
    rows = [json.loads(line) for line in (Path(folder) / LOG).read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval" in r]
    return state, {"lora_rank": settings["rank"], "lora_alpha": settings["alpha"],
                   "lm_stage": {"steps": max((r["step"] for r in rows), default=0),
                                "last_eval": evals[-1] if evals else None}}


def bf16_copy(src: Path, dest: Path) -> None:
    """A safetensors file with every tensor in bfloat16, written atomically (half the bytes of float32)."""
    from safetensors.torch import load_file, save

    write_bytes_atomic(dest, save({k: v.to(torch.bfloat16) for k, v in load_file(str(src)).items()}))


def compact_copy(folder: Path, dest: Path) -> None:
    """Adapters in bfloat16, settings and log: what a session commits so the next one continues (about a
    quarter of the stage folder; the optimiser's moments are left behind). `dest` is replaced whole."""
    def fill(tmp: Path) -> None:
        bf16_copy(folder / ADAPTER, tmp / ADAPTER)
        for name in (SETTINGS, LOG):
            write_bytes_atomic(tmp / name, (folder / name).read_bytes())

    replace_folder(dest, fill)


def is_stage_folder(path: Path) -> bool:
    """A folder this stage wrote (its settings are there): resumable."""
    return (Path(path) / SETTINGS).is_file()


def is_compact_copy(path: Path) -> bool:
    return all(p.name in (ADAPTER, SETTINGS, LOG) for p in Path(path).iterdir())


def load_adapters(model, folder: Path) -> None:
    """The folder's adapters into `model` (float32, whatever dtype they were stored in)."""
    from safetensors.torch import load_file

    if not (folder / ADAPTER).is_file():
        raise FileNotFoundError(f"{folder}: no {ADAPTER}")
    load_lora_state_dict(model, {k: v.float() for k, v in load_file(str(folder / ADAPTER)).items()})


def save(out: Path, model, opt, step: int, rng: random.Random) -> None:
    from safetensors.torch import save_file

    tmp = out / (ADAPTER + ".tmp")
    save_file(lora_state_dict(model), str(tmp))
    tmp.replace(out / ADAPTER)
    torch.save({"step": step, "optimizer": opt.state_dict(), "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, out / (STATE + ".tmp"))
    (out / (STATE + ".tmp")).replace(out / STATE)


def trained_modes(word_fraction: float) -> tuple[str, ...]:
    return tuple(m for m, used in zip(MODES, (word_fraction < 1, word_fraction > 0)) if used)


def evaluate_folder(model, tokenizer, frames: FrameText, a) -> int:
    load_adapters(model, a.out)
    model.eval()
    t0 = time.time()
    row = {"eval_only": True, "tokens_per_frame": frames.tokens_per_frame, "eval_segments": a.eval_segments,
           "videos": a.eval_videos}
    for mode in trained_modes(a.word_fraction):
        row[mode] = evaluate(model, tokenizer, frames, a.eval_videos, a.eval_segments, a.frames_per_segment,
                             seed=10_000, mode=mode)
    row["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(row), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=None, help="train until this total step count")
    ap.add_argument("--segments", default="8,12", help="min,max segments of a training video")
    ap.add_argument("--frames-per-segment", type=int, default=2)
    ap.add_argument("--tokens-per-frame", default="25", help="tokens of a frame, or min,max drawn per video")
    ap.add_argument("--videos-per-step", type=int, default=4, help="each gives one question of each type, and --extra more")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--word-fraction", type=float, default=0.0,
                    help="share of training videos asked without options and answered in words")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--extra", default="", help="more questions per video, e.g. count:3,order:3 (shared prefix: cheap)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-videos", type=int, default=20)
    ap.add_argument("--eval-segments", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-only", action="store_true",
                    help="print the adapters' accuracy (--eval-videos, --eval-segments, --tokens-per-frame) and exit")
    ap.add_argument("--copy-to", type=Path, default=None,
                    help="only write a compact copy of --out here (zoo.video.lm_stage.compact_copy)")
    add_overwrite_argument(ap, "--copy-to: replace a folder that is not a compact copy; otherwise: start afresh "
                               "in a non-empty --out (its old content is removed)")
    a = ap.parse_args(argv)
    if a.copy_to is not None:
        check_destination(a.copy_to, a.overwrite, "--copy-to folder", own_run=is_compact_copy)
        compact_copy(a.out, a.copy_to)
        return 0
    if not a.eval_only:
        check_destination(a.out, a.overwrite, "--out folder", own_run=is_stage_folder)
        if a.overwrite:
            discard_folder(a.out)
        on_interrupt(f"{a.out} holds the adapters and optimiser of the last evaluation step; rerun the same "
                     f"command to continue from there")
    if a.steps is None and not a.eval_only:
        ap.error("--steps is required (except with --copy-to or --eval-only)")
    from adapters.loading import load_model

    torch.set_num_threads(a.threads)
    if a.eval_only and (a.out / SETTINGS).is_file():
        fixed = json.loads((a.out / SETTINGS).read_text())
        a.rank, a.alpha = fixed["rank"], fixed["alpha"]
    lo, hi = (int(x) for x in a.segments.split(","))
    tpf = [int(x) for x in str(a.tokens_per_frame).split(",")]
    tpf_lo, tpf_hi = tpf[0], tpf[-1]
    extra = {task: int(n) for task, n in (x.split(":") for x in a.extra.split(",") if x)}
    unknown = sorted(set(extra) - set(TASKS))
    if unknown:
        ap.error(f"--extra: unknown task(s) {unknown}; expected some of {list(TASKS)}")
    model, tokenizer = load_model("smollm2")
    add_lora(model, a.rank, a.alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    frame_texts = {n: FrameText(tokenizer, n) for n in range(tpf_lo, tpf_hi + 1)}
    frames = frame_texts[tpf_hi]
    if a.eval_only:
        return evaluate_folder(model, tokenizer, frames, a)
    a.out.mkdir(parents=True, exist_ok=True)
    settings_path = a.out / SETTINGS
    if settings_path.exists():
        fixed = json.loads(settings_path.read_text())
        if (fixed["rank"], fixed["alpha"]) != (a.rank, a.alpha):
            raise ValueError(f"{settings_path}: adapters of rank {fixed['rank']}, alpha {fixed['alpha']}; "
                             f"this run asks for rank {a.rank}, alpha {a.alpha}")
    else:
        settings_path.write_text(json.dumps({"rank": a.rank, "alpha": a.alpha, "base": "smollm2"}))
    rng, step = random.Random(a.seed), 0
    torch.manual_seed(a.seed)
    if (a.out / STATE).exists():
        load_adapters(model, a.out)
        state = torch.load(a.out / STATE, weights_only=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}", file=sys.stderr)
    elif (a.out / ADAPTER).exists():  # a committed copy: adapters and log only; the optimiser starts afresh
        load_adapters(model, a.out)
        rows = [json.loads(line) for line in (a.out / LOG).read_text().splitlines() if line.strip()]
        step = max((r["step"] for r in rows), default=0)
        rng = random.Random(a.seed + step)
        print(f"continued from the adapters at step {step} with a new optimiser", file=sys.stderr)
    for g in opt.param_groups:
        g["lr"] = a.lr
    log = open(a.out / LOG, "a")
    model.train()
    running, t0 = [], time.time()
    by_task = {t: [] for t in TASKS}
    while step < a.steps:
        videos = [examples(rng, tokenizer, frame_texts[rng.randint(tpf_lo, tpf_hi) if tpf_hi > tpf_lo else tpf_hi],
                           rng.randint(lo, hi), a.frames_per_segment,
                           "word" if rng.random() < a.word_fraction else "letter", extra)
                  for _ in range(a.videos_per_step)]
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / a.warmup)
        opt.zero_grad()
        loss = 0.0
        for ex in videos:  # one backward per video: its graph is freed before the next is built
            each = torch.nn.functional.cross_entropy(video_logits(model, ex),
                                                     torch.tensor([e[3] for e in ex]), reduction="none")
            (each.mean() / len(videos)).backward()
            loss += each.mean().item() / len(videos)
            for e, value in zip(ex, each.tolist()):
                by_task[e[4]].append(value)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        running.append(loss)
        if step % 10 == 0:
            row = {"step": step, "loss": sum(running) / len(running), "s_per_step": (time.time() - t0) / len(running),
                   "segments": [lo, hi], "tokens_per_frame": [tpf_lo, tpf_hi],
                   "task_loss": {t: round(sum(v) / max(1, len(v)), 3) for t, v in by_task.items()},
                   "tokens": max(len(ex[0][0]) + len(ex[0][1]) for ex in videos)}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            running, t0 = [], time.time()
            by_task = {t: [] for t in TASKS}
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            acc = {m: evaluate(model, tokenizer, frames, a.eval_videos, a.eval_segments, a.frames_per_segment,
                               seed=10_000, mode=m) for m in trained_modes(a.word_fraction)}
            model.train()
            row = {"step": step, "eval": acc.get("letter"), "eval_word": acc.get("word"), "eval_segments": a.eval_segments, "tokens_per_frame": tpf_hi}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            save(a.out, model, opt, step, rng)
            t0 = time.time()
    save(a.out, model, opt, step, rng)
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
