"""eval.video.kept_kinds: which kinds of video-prompt token (caption, background, text) a policy keeps."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from eval.video.kept_kinds import KINDS, kept_by_kind


def test_kept_fractions_are_per_kind_and_averaged_over_layers_and_heads():
    kinds = np.array([0, 0, 1, 1, 1, 1, 2, 2])  # 2 caption, 4 background, 2 text tokens
    layer0 = SimpleNamespace(positions=torch.tensor([[[0, 1, 6, 7], [0, 2, 3, 8]]]))  # 8: a generated token
    layer1 = SimpleNamespace(positions=torch.tensor([[[2, 3, 4, 5], [1, 2, 6, 7]]]))
    got = kept_by_kind(SimpleNamespace(memories=lambda: [layer0, layer1]), kinds)
    assert got["caption"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert got["background"] == pytest.approx((0 + 0.5 + 1 + 0.25) / 4)
    assert got["text"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert got["caption_share_of_kept"] == pytest.approx((2 / 4 + 1 / 3 + 0 + 1 / 4) / 4)


@pytest.mark.slow
def test_the_shipped_video_model_writes_each_frame_as_its_caption_then_background():
    from eval.video import mlvu
    from eval.video.__main__ import REPO, builtin_split, first_per_task
    from eval.video.kept_kinds import token_kinds
    from eval.video.models import load_video_chat
    from zoo.video.frame_text import FrameText

    chat = load_video_chat(str(REPO / "checkpoints" / "llava-video-smollm2"))
    item = first_per_task(mlvu.load(builtin_split(100), tasks=None), 1)[0]
    inputs = chat.processor(chat.mlvu_words_prompt(item), mlvu.load_frames(item, 16))
    kinds = token_kinds(chat.model, inputs, set(FrameText(chat.processor.tokenizer.inner, chat.processor.tokens_per_frame).background))
    video = kinds[inputs["input_ids"][0].numpy() == chat.model.config.video_token_index].reshape(16, 25)
    caption = video == KINDS.index("caption")
    assert caption.any()
    for frame in caption:  # a caption is 2 or 3 tokens at the frame's start, or the frame is background only
        n = int(frame.sum())
        assert n in (0, 2, 3) and frame[:n].all()
    assert (kinds == KINDS.index("text")).sum() > 20
