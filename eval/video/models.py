"""The video chat models `python -m eval.video` drives: the project's tiny LLaVA-NeXT-Video (a folder
with `tiny_video_processor.json`), the SmolLM2 LLaVA-NeXT-Video (a folder with `smol_llava.json`, see
zoo/video/smol_llava.py) or a Hugging Face `LlavaNextVideoForConditionalGeneration` by folder or
hub name (e.g. llava-hf/LLaVA-NeXT-Video-7B-hf, where its weights exist).

Both turn frames into inputs the same way (shortest edge resized to the vision tower's image size,
centre crop, CLIP normalisation; the one `<video>` token expanded to frames x pooled patches), so no
torchvision is needed. The Hugging Face model uses its model card's prompt,
`USER: <video>\\n{text} ASSISTANT:`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adapters.dtype_speed import warn_if_slow
from core.errors import UserError
from eval.video import longvideobench as lvb
from eval.video import mlvu
from zoo.video.processor import HFTokenizer, TinyVideoProcessor

HF_TEMPLATE = "USER: {video}\n{text} ASSISTANT:"


class VideoChat:
    """`mlvu_prompt(item)` / `lvb_prompt(parts)` build the prompt text; `reply(frames, prompt)` is the
    greedy reply (new tokens only)."""

    def __init__(self, model, processor, name: str, hf_template: bool):
        self.model, self.processor, self.name, self.hf_template = model, processor, name, hf_template

    def _wrap(self, text: str, answer_prefix: str) -> str:
        if self.hf_template:
            prompt = HF_TEMPLATE.format(video=self.processor.tokenizer.video_token, text=text)
            return prompt + (" " + answer_prefix if answer_prefix else "")
        return self.processor.chat_prompt("", text, answer_prefix)

    def mlvu_prompt(self, item: mlvu.MLVUItem) -> str:
        if self.hf_template:
            return self._wrap(mlvu.SYSTEM + "\n" + mlvu.question_text(item), mlvu.ANSWER_PREFIX)
        return self.processor.chat_prompt(mlvu.SYSTEM, mlvu.question_text(item), mlvu.ANSWER_PREFIX)

    def mlvu_words_prompt(self, item: mlvu.MLVUItem) -> str:
        """The question without options, answered after "Answer:" (--answer-format words)."""
        if self.hf_template:
            return self._wrap(mlvu.SYSTEM + "\n" + mlvu.words_question_text(item.question), mlvu.WORDS_ANSWER_PREFIX)
        return self.processor.chat_prompt(mlvu.SYSTEM, mlvu.words_question_text(item.question), mlvu.WORDS_ANSWER_PREFIX)

    def lvb_prompt(self, parts: list) -> str:
        """The frames as one video, then the texts in their official order (subtitles interleaved by time
        among themselves, then question, options and instruction): the model takes one video, so
        subtitles follow the frames instead of sitting between them."""
        texts = [p for p in parts if not isinstance(p, lvb.FrameRef)]
        return self._wrap("\n".join(texts), "")

    @torch.no_grad()
    def reply(self, frames: np.ndarray, prompt: str, max_new_tokens: int) -> str:
        inputs = self.processor(prompt, frames)
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.model.dtype)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return self.processor.decode(out[0, inputs["input_ids"].shape[1]:].tolist())

    @torch.no_grad()
    def reply_compressed(self, frames: np.ndarray, prompt: str, max_new_tokens: int, policy, exact: bool = False,
                         n_up: int | None = None, context: str = "prompt"):
        """The greedy reply after the context is compressed once when it ends, on the project's own decoding path
        (`adapters.hf.greedy_generate` over the prompt's input embeddings, frame features merged in).
        `context`: "prompt" (the whole prompt; kvzip in the whole-prompt protocol) or "video" (the prompt up to
        its last video token: the query-agnostic protocol, the question read after the compression). A policy
        that reconstructs its context first (kvzip) is fed it again, frame features included; `n_up`, the
        schedule's interval, must then not fall inside the context. (reply, the `adapters.hf.Generation`)."""
        from adapters.hf import greedy_generate
        from adapters.llava_next_video import prompt_embeddings

        inputs = self.processor(prompt, frames)
        device = next(self.model.parameters()).device
        ids = inputs["input_ids"].to(device)
        context_end = ids.shape[1] if context == "prompt" else self.video_end(ids)
        replays = getattr(policy, "replays_context", False)
        if replays and n_up is not None and context_end >= n_up:
            raise UserError(f"--policies {policy.name}: a context of {context_end} tokens, and every policy updates "
                            f"every {n_up} tokens, inside it, where kvzip cannot run; give a schedule that does not "
                            f"update inside the context (--n-up above it, or a NAMM checkpoint whose config.json "
                            f"sets such an n_up)")
        embeds = prompt_embeddings(self.model, ids, inputs["pixel_values_videos"].to(device, self.model.dtype))
        gen = greedy_generate(self.model, None, policy, max_new_tokens=max_new_tokens,
                              eos_token_id=self.model.generation_config.eos_token_id, exact=exact,
                              context_end=context_end, replay_prompt=self.replay_prompt() if replays else None,
                              inputs_embeds=embeds)
        return self.processor.decode(gen.tokens[0]), gen

    def video_end(self, ids: torch.Tensor) -> int:
        """The position after the prompt's last video token."""
        where = (ids[0] == self.processor.tokenizer.video_token_id).nonzero()
        if where.numel() == 0:
            raise ValueError("the prompt has no video token")
        end = int(where[-1]) + 1
        if end >= ids.shape[1]:
            raise ValueError("the prompt ends with its video: nothing to read after the compressed context")
        return end

    def replay_prompt(self):
        """KVzip's reconstruction instruction in this model's tokens (a word-level tokenizer: its own words)."""
        from adapters.hf.kvzip import FIRST, LATER, ReplayPrompt, replay_prompt

        tokenizer = self.processor.tokenizer
        if hasattr(tokenizer, "inner"):
            return replay_prompt(tokenizer.inner)
        return ReplayPrompt(*(torch.tensor([tokenizer.encode(t, add_bos=False)], dtype=torch.long)
                              for t in (FIRST, LATER, "\n")))


def load_video_chat(name_or_path: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> VideoChat:
    from zoo.video.processor import FILE as TINY_PROCESSOR
    from zoo.video.smol_llava import META as SMOL_META

    warn_if_slow(dtype, device)
    path = Path(name_or_path)
    if (path / SMOL_META).is_file():
        from zoo.video.smol_llava import load_smol_llava

        model, processor = load_smol_llava(path)
        return VideoChat(model.to(device, dtype), processor, path.name, hf_template=False)
    if (path / TINY_PROCESSOR).is_file():
        from zoo.video.model import load_video_model

        model, processor = load_video_model(path)
        return VideoChat(model.to(device, dtype), processor, path.name, hf_template=False)
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: neither a tiny video model ({TINY_PROCESSOR}) nor a Hugging Face "
                                f"model folder (config.json)")
    from transformers import AutoTokenizer, LlavaNextVideoForConditionalGeneration

    model = LlavaNextVideoForConditionalGeneration.from_pretrained(name_or_path, dtype=dtype,
                                                                   attn_implementation="sdpa").to(device).eval()
    config = model.config
    tokenizer = HFTokenizer(AutoTokenizer.from_pretrained(name_or_path), config.video_token_index)
    vision = config.vision_config
    processor = TinyVideoProcessor(tokenizer, vision.image_size, vision.patch_size, config.spatial_pool_stride)
    return VideoChat(model, processor, path.name or str(name_or_path), hf_template=True)
