"""Training/evaluation examples for the tiny model from an MLVU-format split: decoded, resized
frames (cached as .npy beside the split) and prompt/answer token ids."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eval.video import mlvu
from eval.video.frames import DecodeStats

from .processor import TinyVideoProcessor


def answer_text(item: mlvu.MLVUItem) -> str:
    """The reply the model is taught: the option letter, ')' and the option text (continuing 'Best option:(')."""
    return f"{item.answer}) {item.answer_text}"


def prompt_text(processor: TinyVideoProcessor, item: mlvu.MLVUItem, answer_prefix: str = mlvu.ANSWER_PREFIX) -> str:
    return processor.chat_prompt(mlvu.SYSTEM, mlvu.question_text(item), answer_prefix)


# Auxiliary training form: the same prompt ending in "Answer:" and the option text as the reply.
# It gives the model a direct signal for reading the video (the letter alone is a weak 4-way one).
AUX_PREFIX = "Answer:"


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.npy", dir=path.parent)
    os.close(fd)
    try:
        np.save(tmp, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def video_frames(split_dir: Path, items: list[mlvu.MLVUItem], processor: TinyVideoProcessor, n_frames: int,
                 log=print) -> tuple[dict[str, int], np.ndarray, DecodeStats]:
    """(video name -> row, uint8 [V, T, S, S, 3], decode stats); cached in the split folder."""
    names = sorted({it.video for it in items})
    row = {n: i for i, n in enumerate(names)}
    s = processor.image_size
    cache = split_dir / f"frames_{n_frames}f_{s}px_{len(names)}v.npy"
    stats = DecodeStats()
    if cache.is_file():
        arr = np.load(cache)
        if arr.shape[:2] == (len(names), n_frames):
            return row, arr, stats
    by_name = {it.video: it for it in items}
    arr = np.zeros((len(names), n_frames, s, s, 3), dtype=np.uint8)
    t0 = time.time()
    for i, n in enumerate(names):
        arr[i] = processor.frames_to_uint8(mlvu.load_frames(by_name[n], n_frames, stats))
        if log and (i + 1) % 1000 == 0:
            log(f"decoded {i + 1}/{len(names)} videos ({stats.frames_per_second:.0f} frames/s decode, {time.time() - t0:.0f}s)")
    _save_npy_atomic(cache, arr)
    return row, arr, stats


CAPTION_QUESTION = "Name the colour and shape in every frame."
CAPTION_PREFIX = "Frames:"


def frame_labels(frames: np.ndarray) -> list[list[str]]:
    """Per video, per frame: "<colour> <shape>" or "none", read from the (resized) pixels by the
    nearest palette colour at the centre and the best-overlapping shape mask."""
    from .render import COLOURS, SHAPES, shape_mask

    names = list(COLOURS)
    palette = np.array([COLOURS[c] for c in names], dtype=np.float32)
    size = frames.shape[-2]
    masks = np.stack([shape_mask(sh, size) for sh in SHAPES])  # [K, S, S]
    c0, c1 = size // 2 - 2, size // 2 + 2
    out = []
    for video in frames:
        words = []
        for f in video:
            lit = f.max(-1) > 100
            if lit.mean() < 0.05:
                words.append("none")
                continue
            centre = f[c0:c1, c0:c1].reshape(-1, 3).astype(np.float32).mean(0)
            colour = names[int(np.abs(palette - centre).sum(1).argmin())]
            shape = SHAPES[int((masks == lit).reshape(len(SHAPES), -1).mean(1).argmax())]
            words.append(f"{colour} {shape}")
        out.append(words)
    return out


def encode_captions(processor: TinyVideoProcessor, labels: list[list[str]], n_frames: int) -> list[tuple[list[int], list[int]]]:
    """Auxiliary dense task per video: list what every sampled frame shows, in order."""
    prompt = processor.expand_ids(processor.chat_prompt(mlvu.SYSTEM, CAPTION_QUESTION, CAPTION_PREFIX), n_frames)
    eos = processor.tokenizer.eos_token_id
    return [(prompt, processor.tokenizer.encode(" ".join(words), add_bos=False) + [eos]) for words in labels]


LOOKUP_QUESTION = "Which option is"


def lookup_item(item: mlvu.MLVUItem) -> mlvu.MLVUItem:
    """The item with its question replaced by "Which option is <answer text>?" (same options): a
    text-only form that teaches matching an option's text to its letter."""
    from dataclasses import replace

    return replace(item, question=f"{LOOKUP_QUESTION} {item.answer_text}?")


def bare_prompt_text(processor: TinyVideoProcessor, item: mlvu.MLVUItem) -> str:
    """The official prompt without the options list (still ending in "Best option:(")."""
    question = f"Question: {item.question}{mlvu.QUESTION_SUFFIX}"
    return processor.chat_prompt(mlvu.SYSTEM, question, mlvu.ANSWER_PREFIX)


def encode_bare(processor: TinyVideoProcessor, items: list[mlvu.MLVUItem], n_frames: int) -> list[tuple[list[int], list[int]]]:
    """Auxiliary form with no options: the reply after "Best option:(" is the answer text itself.
    It trains the very position that must give the letter in the official form to read the
    answer from the video; with fixed option lists the letter is then a linear read-out."""
    eos = processor.tokenizer.eos_token_id
    return [(processor.expand_ids(bare_prompt_text(processor, it), n_frames),
             processor.tokenizer.encode(it.answer_text, add_bos=False) + [eos]) for it in items]


def encode_items(processor: TinyVideoProcessor, items: list[mlvu.MLVUItem], n_frames: int,
                 auxiliary: bool = False, lookup: bool = False) -> list[tuple[list[int], list[int]]]:
    """(prompt ids with the expanded video, answer ids ending in eos) per item; `auxiliary` uses
    the "Answer:" form with the option text as the reply; `lookup` asks for the option whose text
    is given in the question (see `lookup_item`)."""
    eos = processor.tokenizer.eos_token_id
    prefix = AUX_PREFIX if auxiliary else mlvu.ANSWER_PREFIX
    if lookup:
        items = [lookup_item(it) for it in items]
    return [
        (processor.expand_ids(prompt_text(processor, it, prefix), n_frames),
         processor.tokenizer.encode(it.answer_text if auxiliary else answer_text(it), add_bos=False) + [eos])
        for it in items
    ]


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels (loss on the answer tokens only)."""
    seqs = [p + a for p, a in encoded]
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    labels = torch.full((len(seqs), n), -100, dtype=torch.long)
    for i, ((p, a), s) in enumerate(zip(encoded, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, len(p) : len(s)] = torch.tensor(a)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
