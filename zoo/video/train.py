"""Train the tiny LLaVA-NeXT-Video on the built-in benchmark's training split.

    nice -n 10 python -m zoo.video.train --data .cache/video_builtin --out checkpoints/llava-video-tiny

Loss on the reply tokens ("A) red" + eos) after the MLVU prompt ending in "Best option:(";
parts of each batch use auxiliary forms:
  caption  a dense caption of every sampled frame ("red circle none blue square ...", labels read
           from pixels): teaches per-frame recognition;
  bare     the prompt without the options list, still ending "Best option:(", reply "red": trains
           the position that gives the letter to read the answer from the video;
  aux      the prompt ending "Answer:" with reply "red";
  lookup   "Which option is <answer>?" with the options (text -> letter matching).
The loss is the mean over sequences of each sequence's mean reply-token loss, the letter counted
--letter-weight times (a plain token mean lets the long captions drown the letter).
Logs the running teacher-forced letter accuracy on training batches, and on part of the test split
the teacher-forced letter accuracy per task and the first-token accuracy of the bare form
("bare_*"); saves the model (safetensors) and processor when the mean letter accuracy is best
and at the end (atomic folder swap).
--stop-after N ends the run after step N (evaluated and saved like the last step) while the learning
rate keeps the warmup + cosine schedule of --steps: a deterministic stand-in for a stage that was
stopped by --max-minutes. `python -m zoo.video.rebuild` chains such stages to rebuild the shipped model.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from core.atomic import write_folder_atomic
from core.destination import add_overwrite_argument, check_destination
from core.errors import on_interrupt
from eval.video import mlvu

from .model import load_video_model, new_model, save_video_model
from .render import COLOURS, SHAPES
from .tokenizer import WordTokenizer
from .trainset import (AUX_PREFIX, CAPTION_PREFIX, CAPTION_QUESTION, LOOKUP_QUESTION, collate, encode_bare,
                       encode_captions, encode_items, frame_labels, stderr_log, video_frames)

LETTERS = "ABCDE"


def build_tokenizer(items: list[mlvu.MLVUItem]) -> WordTokenizer:
    texts = [mlvu.SYSTEM, mlvu.QUESTION_SUFFIX, mlvu.ANSWER_PREFIX, "Question: Options:", " ".join(LETTERS),
             " ".join(COLOURS), " ".join(SHAPES), " ".join(str(i) for i in range(10)), "( ) . , ? : ->", AUX_PREFIX, CAPTION_QUESTION, CAPTION_PREFIX, LOOKUP_QUESTION, "none"]
    texts += [it.question + " " + " ".join(it.candidates) for it in items]
    return WordTokenizer.build(texts)


def save_atomic(model, processor, out: Path, extra: dict) -> None:
    def fill(tmp: Path) -> None:
        save_video_model(model, processor, tmp)
        (tmp / "training.json").write_text(json.dumps(extra, indent=1))

    write_folder_atomic(out, fill)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, first_weight: torch.Tensor,
                  hint: torch.Tensor | None = None, hint_weight: float = 0.0, token_mean: bool = False) -> torch.Tensor:
    """Mean over sequences of each sequence's mean reply-token cross entropy, the first reply token
    (the option letter in the official form) counted `first_weight[i]` times. Per-sequence means keep
    the long caption replies from drowning the one-token answers of the question forms.
    `hint[i]` (token id, -100 for none): a second target at the letter's position, the answer's
    first word, counted `hint_weight * first_weight[i]` times; with hint_weight < 1 the letter stays
    the most likely token, and the position that gives the letter is made to read the answer.
    `token_mean`: one weighted mean over all reply tokens of the batch instead (with unit weights the
    model's own causal-LM loss, which the first stages of the shipped model were trained with: there
    the long caption replies dominate, and per-frame recognition is learned first)."""
    lg, lab = logits[:, :-1].float(), labels[:, 1:]
    ce = torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), lab.reshape(-1), ignore_index=-100,
                                           reduction="none").view(lab.shape)
    w = (lab != -100).float()
    first = w.argmax(1)
    rows = torch.arange(len(w))
    w[rows, first] = w[rows, first] * first_weight
    total, norm = (ce * w).sum(1), w.sum(1)
    if hint is not None and hint_weight > 0:
        has = (hint != -100).float()
        ce_h = torch.nn.functional.cross_entropy(lg[rows, first], hint.clamp_min(0), reduction="none")
        total = total + has * hint_weight * first_weight * ce_h
        norm = norm + has * hint_weight * first_weight
    if token_mean:
        return total.sum() / norm.sum().clamp_min(1e-9)
    return (total / norm.clamp_min(1e-9)).mean()


@torch.no_grad()
def first_token_accuracy(model, processor, encoded, frames, rows, items, batch: int = 32) -> dict[str, float]:
    """Greedy first reply token == first answer token (the letter in the official form), per task
    (teacher forcing up to the prompt end)."""
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
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop (and save) after this step; the learning-rate schedule stays the one of --steps")
    ap.add_argument("--aux-share", type=float, default=0.3, help="share of each batch in the auxiliary answer form")
    ap.add_argument("--caption-share", type=float, default=0.3, help="share of each batch in the dense caption task")
    ap.add_argument("--bare-share", type=float, default=0.0,
                    help="share of each batch in the no-options form: 'Best option:(' -> answer text")
    ap.add_argument("--lookup-share", type=float, default=0.0,
                    help="share of each batch asking 'Which option is <answer>?' (teaches option text -> letter)")
    ap.add_argument("--hint-weight", type=float, default=0.0,
                    help="official form: also ask for the answer's first word at the letter's position, this "
                         "fraction of the letter's weight (< 1 keeps the letter the greedy reply)")
    ap.add_argument("--letter-weight", type=float, default=1.0,
                    help="weight of the first reply token (the letter) within its sequence's loss")
    ap.add_argument("--loss", choices=("sequence", "token"), default="sequence",
                    help="sequence: mean over sequences of each one's mean reply-token loss; token: mean over "
                         "all reply tokens of the batch (the plain causal-LM loss of the first training runs)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--patch", type=int, default=16, help="32 px / 16 px patches -> 2x2 grid, pooled to 1 token per frame")
    ap.add_argument("--init", type=Path, default=None, help="continue from this saved model folder")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    add_overwrite_argument(ap, "replace a non-empty --out (the default is the shipped model): the whole folder, "
                               "swapped in atomically at each save")
    a = ap.parse_args(argv)
    if a.stop_after is not None and not 1 <= a.stop_after <= a.steps:
        ap.error(f"--stop-after {a.stop_after}: must be between 1 and --steps ({a.steps})")
    check_destination(a.out, a.overwrite, "--out folder")
    on_interrupt(f"{a.out} holds the best model saved so far, if any (each save is whole); rerun to train again")
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
    enc_look = encode_items(processor, train_items, a.frames, lookup=True)
    enc_bare = encode_bare(processor, train_items, a.frames)
    hint_ids = [tok.encode(it.answer_text, add_bos=False)[0] for it in train_items]
    venc = encode_items(processor, val_items, a.frames)
    venc_aux = encode_bare(processor, val_items, a.frames)
    frames_t = torch.from_numpy(frames)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / a.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / a.steps)))
    )
    model.train()
    t0, losses, best, letter_hits = time.time(), [], -1.0, []
    history = []
    for step in range(1, a.steps + 1):
        idx = [rng.randrange(len(enc)) for _ in range(a.batch)]
        # shares of the batch: dense captions of a video, "Answer: <option text>", the official form
        n_cap = int(round(a.caption_share * a.batch))
        n_aux = int(round(a.aux_share * a.batch))
        n_look = int(round(a.lookup_share * a.batch))
        n_bare = int(round(a.bare_share * a.batch))
        k0 = n_cap + n_bare
        k1, k2 = k0 + n_aux, k0 + n_aux + n_look
        vids = [rows[train_items[i].video] for i in idx]
        b = collate([enc_cap[v] for v in vids[:n_cap]] + [enc_bare[i] for i in idx[n_cap:k0]]
                    + [enc_aux[i] for i in idx[k0:k1]] + [enc_look[i] for i in idx[k1:k2]]
                    + [enc[i] for i in idx[k2:]], tok.pad_token_id)
        pix = processor.normalize(frames_t[vids])
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], pixel_values_videos=pix).logits
        first_w = torch.ones(a.batch)
        first_w[k1:] = a.letter_weight
        hint = torch.full((a.batch,), -100, dtype=torch.long)
        hint[k2:] = torch.tensor([hint_ids[i] for i in idx[k2:]], dtype=torch.long)
        loss = weighted_loss(logits, b["labels"], first_w, hint, a.hint_weight, token_mean=a.loss == "token")
        with torch.no_grad():  # teacher-forced letter accuracy of the official-form rows
            lab = b["labels"][k2:, 1:]
            pos = (lab != -100).float().argmax(1)
            r = torch.arange(len(lab))
            letter_hits.extend((logits[k2:, :-1].argmax(-1)[r, pos] == lab[r, pos]).tolist())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr_now = opt.param_groups[0]["lr"]  # the rate this step was taken with
        opt.step()
        sched.step()
        losses.append(loss.item())
        elapsed = (time.time() - t0) / 60
        done = step == a.steps or elapsed > a.max_minutes or (a.stop_after is not None and step >= a.stop_after)
        if step % a.eval_every == 0 or done:
            acc = first_token_accuracy(model, processor, venc, vframes, vrows, val_items)
            aux = first_token_accuracy(model, processor, venc_aux, vframes, vrows, val_items)
            history.append({"step": step, "minutes": round(elapsed, 2), "lr": lr_now, "loss": float(np.mean(losses[-a.eval_every:])),
                            "train_letter_acc": float(np.mean(letter_hits[-a.eval_every * a.batch:] or [0.0])),
                            **acc, **{f"bare_{k}": v for k, v in aux.items()}})
            stderr_log(json.dumps(history[-1]))
            if acc["mean"] >= best or done:
                best = acc["mean"]
                save_atomic(model, processor, a.out, {"args": {k: str(v) for k, v in vars(a).items()}, "history": history})
        if done:
            break
    stderr_log(f"done: {step} steps, {(time.time() - t0) / 60:.1f} min, best val first-token acc {best:.3f}")
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
