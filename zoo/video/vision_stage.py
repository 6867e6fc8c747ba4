"""Stage 2 of the SmolLM2 LLaVA: train the vision tower and projector so that a frame's 25 video tokens
are the language model's input embeddings of the frame's caption tokens (zoo/video/frame_text.py:
" red circle", then " black" for the background). The language model, frozen here, then reads a video
as it read the captions in stage 1; no language-model forward is needed, so this stage takes a minute.

Training frames are every frame a built-in video can hold (each shape in each colour, and the empty
frame), drawn clean and after an H.264 round trip (the built-in videos' codec), with pixel noise.

    python -m zoo.video.vision_stage --out runs/video-vision --steps 400

A non-empty --out is refused unless --overwrite is given; the folder is written whole, atomically.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from core.destination import add_overwrite_argument, check_destination, replace_folder
from core.errors import on_interrupt

from .frame_text import FrameText
from .render import COLOURS, SHAPES, draw

FRAME_SIZE = 64  # the built-in videos' frame size (zoo.video.make_builtin)


def frame_classes() -> list[tuple[str, str] | None]:
    return [None] + [(s, c) for s in SHAPES for c in COLOURS]


def h264_round_trip(frames: np.ndarray) -> np.ndarray:
    from eval.video.frames import open_video, read_frames

    from .mp4 import write_mp4

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "classes.mp4"
        write_mp4(path, frames, fps=8)
        return read_frames(open_video(path), list(range(len(frames))))


def training_frames(processor) -> tuple[torch.Tensor, list]:
    """[2 * classes, 3, S, S] normalised pixels (clean, then H.264) and the class of each."""
    classes = frame_classes()
    clean = np.stack([draw(*(c or (None, None)), FRAME_SIZE) for c in classes])
    both = np.concatenate([clean, h264_round_trip(clean)])
    return processor.normalize(processor.frames_to_uint8(both)), classes + classes


def video_tokens(model, pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] frames -> [N, tokens_per_frame, hidden] projected video features."""
    cfg = model.config
    out = model.model.get_video_features(pixel_values_videos=pixels[None], vision_feature_layer=cfg.vision_feature_layer,
                                         vision_feature_select_strategy=cfg.vision_feature_select_strategy)
    return out.pooler_output.reshape(len(pixels), -1, cfg.text_config.hidden_size)


@torch.no_grad()
def decoded_ids(model, pixels: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] frames -> [N, tokens_per_frame] ids of each video token's nearest input embedding
    (Euclidean): the text the vision tower writes for each frame."""
    emb = model.get_input_embeddings().weight.float()
    out = video_tokens(model, pixels.to(model.dtype)).float()
    return (out.pow(2).sum(-1, keepdim=True) - 2 * out @ emb.T + emb.pow(2).sum(-1)).argmin(-1)


def decode_accuracy(model, pixels: torch.Tensor, target_ids: torch.Tensor) -> float:
    """Share of video tokens whose nearest input embedding is the caption's token."""
    return float((decoded_ids(model, pixels) == target_ids).float().mean())


def train(model, processor, steps: int, lr: float = 3e-3, noise: float = 0.05, seed: int = 0, log=print) -> dict:
    torch.manual_seed(seed)
    frames = FrameText(processor.tokenizer.inner, int(model.config.video_seq_length))
    pixels, classes = training_frames(processor)
    target_ids = torch.tensor([frames.frame_ids(c) for c in classes])
    with torch.no_grad():
        targets = model.get_input_embeddings()(target_ids)
    background = target_ids == frames.background[0]
    weight = torch.where(background, 1.0, float(background.sum() / (~background).sum()))  # caption and background slots weigh alike
    params = [p for n, p in model.named_parameters() if n.startswith(("model.vision_tower.", "model.multi_modal_projector."))]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for step in range(1, steps + 1):
        noisy = pixels + noise * torch.randn_like(pixels)
        loss = ((video_tokens(model, noisy) - targets).pow(2).mean(-1) * weight).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps:
            model.eval()
            acc = decode_accuracy(model, pixels, target_ids)
            model.train()
            log(json.dumps({"step": step, "mse": loss.item(), "token_accuracy": acc}))
    model.eval()
    for p in params:
        p.requires_grad_(False)
    return {"mse": loss.item(), "token_accuracy": decode_accuracy(model, pixels, target_ids),
            "target_rms": float(targets.pow(2).mean().sqrt())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the model (smol_llava.py layout)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lm-stage", type=Path, default=None,
                    help="a zoo.video.lm_stage folder whose adapters the saved model carries")
    add_overwrite_argument(ap)
    a = ap.parse_args(argv)
    check_destination(a.out, a.overwrite, "--out folder")
    on_interrupt(f"nothing was written to {a.out} (it is written whole at the end); rerun to train again")
    replace_folder(a.out, lambda folder: write_model(folder, a.steps, a.seed, a.threads, a.lm_stage))
    return 0


def write_model(folder: Path, steps: int, seed: int = 0, threads: int = 1, lm_stage: Path | None = None) -> dict:
    """Train this stage and write the model (with `lm_stage`'s adapters, if given) into `folder`."""
    from .smol_llava import build, save_smol_llava

    torch.set_num_threads(threads)
    model, processor = build(seed=seed)
    result = train(model, processor, steps, seed=seed, log=lambda m: print(m, flush=True))
    meta = {"vision_stage": {"steps": steps, "seed": seed, **result}}
    adapter = None
    if lm_stage is not None:
        from .lm_stage import decoder_adapter

        adapter, lm_meta = decoder_adapter(lm_stage)
        meta.update(lm_meta)
    save_smol_llava(folder, model, adapter, meta)
    print(json.dumps(result), file=sys.stderr)
    return result


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
