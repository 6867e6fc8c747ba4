"""Train the tiny LLaVA-NeXT-Video from scratch on the built-in benchmark's training split.

    nice -n 10 python -m zoo.video.train --data .cache/video_builtin --out checkpoints/llava-video-tiny

Loss on the reply tokens ("A) red" + eos) after the MLVU prompt ending in "Best option:(";
parts of each batch use auxiliary forms: the prompt ending "Answer:" with reply "red", and a
dense caption of every sampled frame ("red circle none blue square ...", labels read from pixels).
Logs teacher-forced first-token accuracy per task on part of the test split; saves the model
(safetensors) and processor at every evaluation and at the end (atomic folder swap), and always at the end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eval.video import mlvu

from .model import load_video_model, new_model, save_video_model
from .render import COLOURS, SHAPES
from .tokenizer import WordTokenizer
from .trainset import (AUX_PREFIX, CAPTION_PREFIX, CAPTION_QUESTION, collate, encode_captions, encode_items,
                       frame_labels, stderr_log, video_frames)

LETTERS = "ABCDE"


def build_tokenizer(items: list[mlvu.MLVUItem]) -> WordTokenizer:
    texts = [mlvu.SYSTEM, mlvu.QUESTION_SUFFIX, mlvu.ANSWER_PREFIX, "Question: Options:", " ".join(LETTERS),
             " ".join(COLOURS), " ".join(SHAPES), " ".join(str(i) for i in range(10)), "( ) . , ? : ->", AUX_PREFIX, CAPTION_QUESTION, CAPTION_PREFIX, "none"]
    texts += [it.question + " " + " ".join(it.candidates) for it in items]
    return WordTokenizer.build(texts)


def save_atomic(model, processor, out: Path, extra: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_video_model(model, processor, tmp)
        (tmp / "training.json").write_text(json.dumps(extra, indent=1))
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(out, old)
        os.replace(tmp, out)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@torch.no_grad()
def first_token_accuracy(model, processor, encoded, frames, rows, items, batch: int = 32) -> dict[str, float]:
    """Greedy first reply token == answer letter, per task (teacher forcing up to the prompt end)."""
    model.eval()
    hits: dict[str, list[bool]] = {}
    for s in range(0, len(encoded), batch):
        enc = encoded[s : s + batch]
        b = collate([(p, []) for p, _ in enc], processor.tokenizer.pad_token_id)
        pix = processor.normalize(frames[[rows[it.video] for it in items[s : s + batch]]])
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values_videos=pix).logits
        last = b["attention_mask"].sum(1) - 1
        pred = logits[torch.arange(len(enc)), last].argmax(-1)
        for it, (_, a), p in zip(items[s : s + batch], enc, pred.tolist()):
            hits.setdefault(it.task, []).append(p == a[0])
    model.train()
    acc = {t: float(np.mean(v)) for t, v in hits.items()}
    acc["mean"] = float(np.mean(list(acc.values())))
    return acc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(".cache/video_builtin"))
    ap.add_argument("--out", type=Path, default=Path("checkpoints/llava-video-tiny"))
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-items", type=int, default=400)
    ap.add_argument("--max-minutes", type=float, default=25.0, help="stop (and save) after this much training time")
    ap.add_argument("--aux-share", type=float, default=0.3, help="share of each batch in the auxiliary answer form")
    ap.add_argument("--caption-share", type=float, default=0.3, help="share of each batch in the dense caption task")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--patch", type=int, default=16, help="32 px / 16 px patches -> 2x2 grid, pooled to 1 token per frame")
    ap.add_argument("--init", type=Path, default=None, help="continue from this saved model folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rng = random.Random(a.seed)

    train_items = mlvu.load(a.data / "train", tasks=None)
    test_items = mlvu.load(a.data / "test", tasks=None)
    if a.init:
        model, processor = load_video_model(a.init)
        model.train()
        tok = processor.tokenizer
    else:
        tok = build_tokenizer(train_items)
        model, processor = new_model(tok, image_size=a.image_size, patch_size=a.patch, seed=a.seed)
    stderr_log(f"vocab {len(tok)}, params {sum(p.numel() for p in model.parameters())}, train items {len(train_items)}")

    rows, frames, stats = video_frames(a.data / "train", train_items, processor, a.frames, log=stderr_log)
    if stats.frames:
        stderr_log(f"train decode: {stats.frames} frames at {stats.frames_per_second:.0f} frames/s")
    val_items = rng.sample(test_items, min(a.eval_items, len(test_items)))
    vrows, vframes, _ = video_frames(a.data / "test", test_items, processor, a.frames, log=stderr_log)
    enc = encode_items(processor, train_items, a.frames)
    enc_aux = encode_items(processor, train_items, a.frames, auxiliary=True)
    labels = frame_labels(frames)
    enc_cap = encode_captions(processor, labels, a.frames)  # indexed by video row
    stderr_log(f"caption example: {' '.join(labels[0][:6])} ...")
    venc = encode_items(processor, val_items, a.frames)
    frames_t = torch.from_numpy(frames)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps)))
    )
    model.train()
    t0, losses, best = time.time(), [], -1.0
    history = []
    for step in range(1, a.steps + 1):
        idx = [rng.randrange(len(enc)) for _ in range(a.batch)]
        # shares of the batch: dense captions of a video, "Answer: <option text>", the official form
        n_cap = int(round(a.caption_share * a.batch))
        n_aux = int(round(a.aux_share * a.batch))
        vids = [rows[train_items[i].video] for i in idx]
        b = collate([enc_cap[v] for v in vids[:n_cap]] + [enc_aux[i] for i in idx[n_cap:n_cap + n_aux]]
                    + [enc[i] for i in idx[n_cap + n_aux:]], tok.pad_token_id)
        pix = processor.normalize(frames_t[vids])
        loss = model(**b, pixel_values_videos=pix).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        elapsed = (time.time() - t0) / 60
        done = step == a.steps or elapsed > a.max_minutes
        if step % a.eval_every == 0 or done:
            acc = first_token_accuracy(model, processor, venc, vframes, vrows, val_items)
            history.append({"step": step, "minutes": round(elapsed, 2), "loss": float(np.mean(losses[-a.eval_every:])), **acc})
            stderr_log(json.dumps(history[-1]))
            if acc["mean"] >= best or done:
                best = acc["mean"]
                save_atomic(model, processor, a.out, {"args": {k: str(v) for k, v in vars(a).items()}, "history": history})
        if done:
            break
    stderr_log(f"done: {step} steps, {(time.time() - t0) / 60:.1f} min, best val first-token acc {best:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
