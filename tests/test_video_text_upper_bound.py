"""The text upper bound: the frames a language model is shown, and the answer it is said to choose."""
import random

import torch

from zoo.video import text_upper_bound as tub
from zoo.video.scenes import make_video


def test_every_frame_is_listed_once_in_order_with_its_segment_repeated():
    segments = [("circle", "red"), None, ("cross", "blue")]
    lines = tub.frame_lines(segments, 2).splitlines()
    assert lines == ["Frame 1: a red circle.", "Frame 2: a red circle.", "Frame 3: nothing.",
                     "Frame 4: nothing.", "Frame 5: a blue cross.", "Frame 6: a blue cross."]


def test_word_choice_with_a_shared_prompt_cache_equals_scoring_each_full_sequence(smollm2, one_thread):
    model, tok = smollm2
    spec, questions = make_video(random.Random(1), "v", 12, 1, 1)
    q = questions["count"]
    text = tub.render(tok, tub.word_prompt(tub.frame_lines(spec.segments, 1), q), "Answer:")
    prompt = tok(text, return_tensors="pt").input_ids
    full_scores = []
    with torch.no_grad():
        for c in q["candidates"]:
            cont = tok(" " + c, add_special_tokens=False, return_tensors="pt").input_ids
            logp = model(input_ids=torch.cat([prompt, cont], 1)).logits[0, prompt.shape[1] - 1 : -1].log_softmax(-1)
            full_scores.append(float(logp.gather(1, cont[0, :, None]).sum()))
    assert tub.word_choice(model, tok, text, q["candidates"]) == max(range(4), key=full_scores.__getitem__)


def test_wilson_interval_matches_the_textbook_values():
    low, high = tub.wilson(10, 20)
    assert abs(low - 0.2993) < 1e-3 and abs(high - 0.7007) < 1e-3
    assert tub.wilson(0, 20)[0] == 0.0 and tub.wilson(20, 20)[1] == 1.0
