"""Stage 1 of the SmolLM2 LLaVA: teach the language model the video questions, with frames given as the
tokens its projector will later emit (zoo/video/frame_text.py). Low-rank adapters (zoo/video/lora.py)
are trained on the letter of the right option; the base weights stay as shipped.

Resumable: `--out` holds the adapters, the optimiser, the step and a log; running again continues,
and a later phase may change the segment range or the frame length (a curriculum).

    python -m zoo.video.lm_stage --out runs/video-lm --steps 400 --segments 8,12 --tokens-per-frame 3
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from .frame_text import FrameText, letter_ids, prompt_parts
from .lora import add_lora, load_lora_state_dict, lora_state_dict
from .scenes import TASKS, make_video

ADAPTER = "adapter.safetensors"
STATE = "train_state.pt"
LOG = "log.jsonl"


def examples(rng: random.Random, tokenizer, frames: FrameText, n_segments: int, frames_per_segment: int):
    """One generated video's four questions as (ids, answer index, task)."""
    for _ in range(100):  # short videos sometimes cannot hold every question type: draw another
        try:
            spec, questions = make_video(rng, "train", n_segments, frames_per_segment, 1)
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError(f"no video of {n_segments} segments holds every question type")
    video = frames.video_ids(spec.segments, frames_per_segment)
    out = []
    for task in TASKS:
        q = questions[task]
        before, after = prompt_parts(tokenizer, q["question"], q["candidates"])
        out.append((before + video + after, q["candidates"].index(q["answer"]), task))
    return out


def batch_logits(model, seqs: list[list[int]], option_ids: list[int]) -> torch.Tensor:
    """[B, n_options] next-token logits of the option letters after each sequence (right padded)."""
    longest = max(map(len, seqs))
    ids = torch.zeros(len(seqs), longest, dtype=torch.long)
    mask = torch.zeros(len(seqs), longest, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    last = hidden[torch.arange(len(seqs)), torch.tensor([len(s) - 1 for s in seqs])]
    return model.lm_head(last)[:, option_ids]


@torch.no_grad()
def evaluate(model, tokenizer, frames: FrameText, option_ids, n_videos: int, n_segments: int,
             frames_per_segment: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    hits = {t: 0 for t in TASKS}
    for _ in range(n_videos):
        ex = examples(rng, tokenizer, frames, n_segments, frames_per_segment)
        pred = batch_logits(model, [e[0] for e in ex], option_ids).argmax(-1)
        for (_, ans, task), p in zip(ex, pred.tolist()):
            hits[task] += int(p == ans)
    return {t: hits[t] / n_videos for t in TASKS}


def save(out: Path, model, opt, step: int, rng: random.Random) -> None:
    from safetensors.torch import save_file

    tmp = out / (ADAPTER + ".tmp")
    save_file(lora_state_dict(model), str(tmp))
    tmp.replace(out / ADAPTER)
    torch.save({"step": step, "optimizer": opt.state_dict(), "rng": rng.getstate(),
                "torch_rng": torch.get_rng_state()}, out / (STATE + ".tmp"))
    (out / (STATE + ".tmp")).replace(out / STATE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, required=True, help="train until this total step count")
    ap.add_argument("--segments", default="8,12", help="min,max segments of a training video")
    ap.add_argument("--frames-per-segment", type=int, default=2)
    ap.add_argument("--tokens-per-frame", type=int, default=25)
    ap.add_argument("--videos-per-step", type=int, default=2, help="each gives its 4 questions")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-videos", type=int, default=20)
    ap.add_argument("--eval-segments", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    from adapters.loading import load_model
    from safetensors.torch import load_file

    torch.set_num_threads(a.threads)
    lo, hi = (int(x) for x in a.segments.split(","))
    model, tokenizer = load_model("smollm2")
    add_lora(model, a.rank, a.alpha)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    frames = FrameText(tokenizer, a.tokens_per_frame)
    option_ids = letter_ids(tokenizer, 4)
    a.out.mkdir(parents=True, exist_ok=True)
    rng, step = random.Random(a.seed), 0
    torch.manual_seed(a.seed)
    if (a.out / STATE).exists():
        load_lora_state_dict(model, load_file(str(a.out / ADAPTER)))
        state = torch.load(a.out / STATE, weights_only=False)
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}", file=sys.stderr)
    for g in opt.param_groups:
        g["lr"] = a.lr
    log = open(a.out / LOG, "a")
    model.train()
    running, t0 = [], time.time()
    while step < a.steps:
        batch = [e for _ in range(a.videos_per_step)
                 for e in examples(rng, tokenizer, frames, rng.randint(lo, hi), a.frames_per_segment)]
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / a.warmup)
        logits = batch_logits(model, [e[0] for e in batch], option_ids)
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([e[1] for e in batch]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        running.append(loss.item())
        if step % 10 == 0:
            row = {"step": step, "loss": sum(running) / len(running), "s_per_step": (time.time() - t0) / len(running),
                   "segments": [lo, hi], "tokens_per_frame": a.tokens_per_frame, "tokens": max(len(e[0]) for e in batch)}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            running, t0 = [], time.time()
        if step % a.eval_every == 0 or step == a.steps:
            model.eval()
            acc = evaluate(model, tokenizer, frames, option_ids, a.eval_videos, a.eval_segments,
                           a.frames_per_segment, seed=10_000)
            model.train()
            row = {"step": step, "eval": acc, "eval_segments": a.eval_segments, "tokens_per_frame": a.tokens_per_frame}
            print(json.dumps(row), flush=True)
            log.write(json.dumps(row) + "\n")
            log.flush()
            save(a.out, model, opt, step, rng)
            t0 = time.time()
    save(a.out, model, opt, step, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
