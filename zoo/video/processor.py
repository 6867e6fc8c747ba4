"""Turn frames and a prompt into inputs of the tiny LLaVA-NeXT-Video (numpy/PIL; no torchvision).

Frames: shortest edge resized to `image_size` (bicubic), centre crop, scaled to [0, 1], CLIP mean/std
normalised -> `pixel_values_videos` [1, T, 3, S, S]. Text: the single `<video>` is expanded to
T * (S / patch)^2 / stride^2 placeholder tokens, the count the model's pooled video features fill.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eval.video.jsonio import read_json, write_json_atomic

from .tokenizer import WordTokenizer

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FILE = "tiny_video_processor.json"


class HFTokenizer:
    """A Hugging Face tokenizer with the small interface the frame processor uses."""

    def __init__(self, tokenizer, video_token_id: int):
        self.inner = tokenizer
        self.video_token_id = int(video_token_id)
        self.video_token = tokenizer.convert_ids_to_tokens(self.video_token_id)
        if self.video_token is None or self.video_token == tokenizer.unk_token:
            raise ValueError(f"the tokenizer has no token for the model's video_token_index {video_token_id}")

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        return self.inner(text, add_special_tokens=add_bos).input_ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.inner.decode(ids, skip_special_tokens=skip_special_tokens)


class TinyVideoProcessor:
    def __init__(self, tokenizer: WordTokenizer, image_size: int, patch_size: int, pool_stride: int = 2):
        if image_size % patch_size or (image_size // patch_size) % pool_stride:
            raise ValueError(f"image_size {image_size} must split into patches of {patch_size} and pool by {pool_stride}")
        self.tokenizer = tokenizer
        self.image_size, self.patch_size, self.pool_stride = image_size, patch_size, pool_stride
        self.mean = np.array(CLIP_MEAN, dtype=np.float32)
        self.std = np.array(CLIP_STD, dtype=np.float32)

    @property
    def tokens_per_frame(self) -> int:
        side = self.image_size // self.patch_size // self.pool_stride
        return side * side

    def resize(self, frame: np.ndarray) -> np.ndarray:
        img = Image.fromarray(frame)
        w, h = img.size
        s = self.image_size
        scale = s / min(w, h)
        img = img.resize((max(s, round(w * scale)), max(s, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - s) // 2, (h - s) // 2
        return np.asarray(img.crop((left, top, left + s, top + s)))

    def frames_to_uint8(self, frames: np.ndarray) -> np.ndarray:
        """[T, H, W, 3] uint8 -> [T, S, S, 3] uint8 (resize + crop only; cacheable)."""
        return np.stack([self.resize(f) for f in frames])

    def normalize(self, small: np.ndarray | torch.Tensor) -> torch.Tensor:
        """[..., S, S, 3] uint8 -> [..., 3, S, S] float, CLIP-normalised."""
        x = torch.as_tensor(np.asarray(small)).float() / 255.0
        x = (x - torch.from_numpy(self.mean)) / torch.from_numpy(self.std)
        return x.movedim(-1, -3).contiguous()

    def chat_prompt(self, system: str, question: str, answer_prefix: str) -> str:
        """The tiny model's template: system, the video, the question, then the answer prefix."""
        return f"{system}{self.tokenizer.video_token}\n{question}\n{answer_prefix}"

    def expand_ids(self, text: str, n_frames: int) -> list[int]:
        ids = self.tokenizer.encode(text)
        vid = self.tokenizer.video_token_id
        if ids.count(vid) != 1:
            raise ValueError(f"the prompt must hold exactly one {self.tokenizer.video_token}, found {ids.count(vid)}")
        k = ids.index(vid)
        return ids[:k] + [vid] * (n_frames * self.tokens_per_frame) + ids[k + 1 :]

    def __call__(self, text: str, videos: np.ndarray) -> dict:
        small = self.frames_to_uint8(videos)
        ids = self.expand_ids(text, len(small))
        return {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values_videos": self.normalize(small)[None],
        }

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def save_pretrained(self, folder: str | Path) -> None:
        write_json_atomic(
            Path(folder) / FILE,
            {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "pool_stride": self.pool_stride,
                "image_mean": list(CLIP_MEAN),
                "image_std": list(CLIP_STD),
                "vocab": self.tokenizer.vocab,
            },
            indent=None,
        )

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "TinyVideoProcessor":
        path = Path(folder) / FILE
        cfg = read_json(path)
        for key in ("image_size", "patch_size", "pool_stride", "vocab"):
            if key not in cfg:
                raise ValueError(f"{path}: missing field '{key}'")
        return cls(WordTokenizer(cfg["vocab"]), cfg["image_size"], cfg["patch_size"], cfg["pool_stride"])
