"""How well a language model answers the built-in video questions when every frame is given as perfect
text ("Frame 7: a red circle."). No vision tower or projector can hand a frozen language model more than
this, so it bounds what a LLaVA built on that model, frozen, can reach on these questions.

Two ways of answering are scored on the same items:
  letter  the MLVU protocol (`eval.video --answer-format letter`): the options as (A)-(D), the answer read from the
          next-token logits of the four letters after "Best option:(";
  word    no options shown; the option whose text (" red", " 3") is most likely after "Answer:".

    python -m zoo.video.text_upper_bound --model smollm2 --segments 12 --n 20
    python -m zoo.video.text_upper_bound --model smollm2 --segments 32 --frames-per-segment 2 --n 30
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import copy
import random
import sys
from pathlib import Path

import torch

from eval.video import mlvu
from eval.video.accuracy import wilson
from eval.video.choices import letter

from .scenes import TASKS, make_video

MODES = ("letter", "word")


def frame_lines(segments, frames_per_segment: int) -> str:
    frames = [s for s in segments for _ in range(frames_per_segment)]
    return "\n".join(f"Frame {i + 1}: a {s[1]} {s[0]}." if s else f"Frame {i + 1}: nothing."
                     for i, s in enumerate(frames))


def letter_prompt(video: str, question: dict) -> str:
    return f"{mlvu.SYSTEM}Video:\n{video}\n{mlvu.question_block(question['question'], question['candidates'])}"


def word_prompt(video: str, question: dict) -> str:
    return f"Video:\n{video}\nQuestion: {question['question']}"


def render(tokenizer, user: str, answer_prefix: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                             add_generation_prompt=True) + answer_prefix
    return f"{user}\n{answer_prefix}"


def letter_token_ids(tokenizer, n_options: int) -> list[int]:
    return [tokenizer.encode(letter(i), add_special_tokens=False)[0] for i in range(n_options)]


@torch.no_grad()
def letter_choice(model, ids: torch.Tensor, letter_ids: list[int]) -> int:
    """The option whose letter is most likely next after the prompt `ids` [1, T]."""
    logits = model(input_ids=ids, logits_to_keep=1).logits[0, -1]
    return int(logits[letter_ids].argmax())


@torch.no_grad()
def word_choice(model, tokenizer, text: str, candidates) -> int:
    """The candidate with the highest summed log-probability as the continuation of `text`; the prompt's
    cache is computed once and copied for each candidate."""
    from transformers import DynamicCache

    ids = tokenizer(text, return_tensors="pt").input_ids
    cache = DynamicCache(config=model.config)
    first = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[0, -1].log_softmax(-1)
    scores = []
    for c in candidates:
        cont = tokenizer(" " + c, add_special_tokens=False, return_tensors="pt").input_ids
        score = float(first[cont[0, 0]])
        if cont.shape[1] > 1:
            out = model(input_ids=cont[:, :-1], past_key_values=copy.deepcopy(cache), use_cache=True).logits[0]
            score += float(out.log_softmax(-1).gather(1, cont[0, 1:, None]).sum())
        scores.append(score)
    return max(range(len(scores)), key=scores.__getitem__)


def evaluate(model, tokenizer, n_videos: int, segments: int, frames_per_segment: int, seed: int = 0,
             progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    rng = random.Random(seed)
    letter_ids = None
    hits = {m: {t: 0 for t in TASKS} for m in MODES}
    prompt_tokens = []
    for k in tqdm(range(n_videos), desc="text upper bound", unit="video", disable=not progress):
        spec, questions = make_video(rng, f"text_{k:05d}", segments, frames_per_segment, 1)
        video = frame_lines(spec.segments, frames_per_segment)
        for task, q in questions.items():
            ids = tokenizer(render(tokenizer, letter_prompt(video, q), mlvu.ANSWER_PREFIX), return_tensors="pt").input_ids
            prompt_tokens.append(ids.shape[1])
            letter_ids = letter_ids or letter_token_ids(tokenizer, len(q["candidates"]))
            hits["letter"][task] += int(q["candidates"][letter_choice(model, ids, letter_ids)] == q["answer"])
            text = render(tokenizer, word_prompt(video, q), "Answer:")
            hits["word"][task] += int(q["candidates"][word_choice(model, tokenizer, text, q["candidates"])] == q["answer"])
    return {
        "videos": n_videos, "segments": segments, "frames_per_segment": frames_per_segment, "seed": seed,
        "chance": 0.25, "prompt_tokens": [min(prompt_tokens), max(prompt_tokens)],
        "accuracy": {m: {t: {"hits": hits[m][t], "n": n_videos, "accuracy": hits[m][t] / n_videos,
                             "ci95": list(wilson(hits[m][t], n_videos))} for t in TASKS} for m in MODES},
    }


def table(result: dict) -> str:
    lines = [f"{'mode':<8}" + "".join(f"{t:>24}" for t in TASKS)]
    for m in MODES:
        cells = []
        for t in TASKS:
            a = result["accuracy"][m][t]
            cells.append(f"{100 * a['accuracy']:5.1f} [{100 * a['ci95'][0]:4.1f}, {100 * a['ci95'][1]:4.1f}]")
        lines.append(f"{m:<8}" + "".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3-270m, a hub name or a local folder")
    ap.add_argument("--segments", type=int, default=12)
    ap.add_argument("--frames-per-segment", type=int, default=1)
    ap.add_argument("--n", type=int, default=20, help="videos; each asks one question of every type")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="results JSON")
    a = ap.parse_args(argv)
    from adapters.loading import load_model
    from core.atomic import write_json_atomic

    torch.set_num_threads(a.threads)
    model, tokenizer = load_model(a.model)
    result = evaluate(model, tokenizer, a.n, a.segments, a.frames_per_segment, a.seed)
    result["model"] = a.model
    print(f"{a.model}: {a.segments} segments x {a.frames_per_segment} frames, prompts of "
          f"{result['prompt_tokens'][0]}-{result['prompt_tokens'][1]} tokens, n = {a.n} per type, chance 25%")
    print(table(result))
    if a.out:
        write_json_atomic(a.out, result)
        print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
