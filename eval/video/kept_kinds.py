"""`python -m eval.video.kept_kinds`: which kinds of prompt token each policy keeps on built-in videos.

The SmolLM2 LLaVA's vision tower writes each frame as the text of its caption then background tokens
("red circle black black ..."): every video token decodes to its nearest input embedding. A video token
that decodes to the caption's words is a "caption" token, one that decodes to the background token is
"background"; the rest of the prompt is "text" (system, question, answer prefix). For every policy
(baselines at the NAMM's cache fraction on the same item, as `eval.video --budget matched`), after the
reply this prints the fraction of each kind still in the cache (mean over layers and KV heads) and the
share of the kept tokens that are caption tokens, and writes the numbers to --out as JSON.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.atomic import write_json_atomic
from core.errors import UserError, cli_main

KINDS = ("caption", "background", "text")


def token_kinds(model, inputs: dict, background_ids: set[int]) -> np.ndarray:
    """Kind index (into KINDS) of every prompt position, from the decoded video tokens."""
    from zoo.video.vision_stage import decoded_ids

    ids = inputs["input_ids"].reshape(-1).numpy()
    kinds = np.full(len(ids), KINDS.index("text"))
    video = np.flatnonzero(ids == model.config.video_token_index)
    pixels = inputs["pixel_values_videos"]
    decoded = decoded_ids(model, pixels.reshape(-1, *pixels.shape[-3:])).reshape(-1).numpy()
    if len(decoded) != len(video):
        raise ValueError(f"{len(video)} video tokens in the prompt, {len(decoded)} decoded from the frames")
    is_background = np.isin(decoded, sorted(background_ids))
    kinds[video] = np.where(is_background, KINDS.index("background"), KINDS.index("caption"))
    return kinds


def kept_by_kind(cache, kinds: np.ndarray) -> dict[str, float]:
    """Fraction of each kind's prompt tokens still held, mean over layers and heads; caption share of kept."""
    fractions = {k: [] for k in KINDS}
    shares = []
    n_prompt = len(kinds)
    total = np.bincount(kinds, minlength=len(KINDS))
    for mem in cache.memories():
        positions = mem.positions[0]  # [heads, kept]
        for head in positions:
            kept = head[head < n_prompt].numpy()
            held = np.bincount(kinds[kept], minlength=len(KINDS))
            for i, k in enumerate(KINDS):
                if total[i]:
                    fractions[k].append(held[i] / total[i])
            shares.append(held[KINDS.index("caption")] / max(1, held.sum()))
    out = {k: float(np.mean(v)) for k, v in fractions.items() if v}
    out["caption_share_of_kept"] = float(np.mean(shares))
    return out


def main(argv=None) -> int:
    return cli_main(_main, argv)


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.video.kept_kinds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llava-video-smollm2")
    parser.add_argument("--ckpt", default=None, help="NAMM checkpoint (default: the shipped one)")
    parser.add_argument("--policies", default="namm,h2o,tova,l2,recency")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--limit", type=int, default=2, help="videos per question type")
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--exact", action="store_true", help="compute attention as the unmodified model does "
                        "(see eval.policy_setup's --exact)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/video-kept-kinds.json")
    args = parser.parse_args(argv)
    from adapters.hf import attach
    from eval import policy_setup
    from eval.video import mlvu
    from eval.video.__main__ import DEFAULT_SCHEDULE, builtin_split, first_per_task, shipped_model
    from eval.video.models import load_video_chat
    from zoo.video.frame_text import FrameText

    from eval.lm.checks import at_least, name_list, policy_names, refuse_replaying
    from zoo.video.smol_llava import META

    names = name_list("--policies", args.policies, policy_names())
    refuse_replaying(names, "a video prompt is compressed as it streams")
    for option, value in (("--frames", args.frames), ("--limit", args.limit), ("--n-test", args.n_test),
                          ("--threads", args.threads)):
        at_least(option, value, 1)
    model = shipped_model(args.model)
    if not (Path(model) / META).is_file():
        raise UserError(f"--model {args.model}: not a SmolLM2 LLaVA folder (no {META}); only that model writes "
                        "frames as caption and background tokens")
    if "namm" not in names:
        raise UserError("--policies: the baselines are matched to the NAMM, so namm must be one of them")
    names = ["namm"] + [n for n in names if n != "namm"]
    setup_args = argparse.Namespace(ckpt=args.ckpt, budget="matched", n_up=None, prompt_end=None, exact=args.exact)
    setup = policy_setup.resolve(setup_args, names, DEFAULT_SCHEDULE)
    torch.set_num_threads(args.threads)
    chat = load_video_chat(model)
    background = set(FrameText(chat.processor.tokenizer.inner, chat.processor.tokens_per_frame).background)
    items = first_per_task(mlvu.load(builtin_split(args.n_test), tasks=None), args.limit)
    rows: dict[str, list[dict]] = {n: [] for n in names}
    for item in tqdm(items, desc="videos", unit="video"):
        frames = mlvu.load_frames(item, args.frames)
        prompt = chat.mlvu_words_prompt(item)
        kinds = token_kinds(chat.model, chat.processor(prompt, frames), background)
        counts = {k: int(c) for k, c in zip(KINDS, np.bincount(kinds, minlength=len(KINDS)))}
        budget = None
        for name in names:
            policy = setup.build(name) if name == "namm" else setup.build(name, budget)
            with attach(chat.model, policy, exact=setup.exact) as session:
                reply = chat.reply(frames, prompt, 4)
                stats = kept_by_kind(session.cache, kinds)
                if name == "namm":
                    budget = policy_setup.matched_budget(session.cache.fraction_at_update())
            rows[name].append({"item": item.id, "task": item.task, "correct": mlvu.score(item, reply, "words")["correct"],
                               "cache": session.cache.fraction(), "prompt_tokens": counts, **stats})
    summary = {n: {k: float(np.mean([r[k] for r in rs])) for k in (*KINDS, "caption_share_of_kept", "cache", "correct")}
               for n, rs in rows.items()}
    mean_counts = {k: round(float(np.mean([r["prompt_tokens"][k] for r in rows[names[0]]])), 1) for k in KINDS}
    print(f"{len(items)} videos, {args.frames} frames; a prompt's tokens by kind, mean over videos: {mean_counts}")
    print(f"{'policy':<10}{'cache':>7}" + "".join(f"{'kept ' + k:>17}" for k in KINDS) + f"{'caption share':>14}{'correct':>9}")
    for n, s in summary.items():
        print(f"{n:<10}{s['cache']:>7.2f}" + "".join(f"{s[k]:>17.2f}" for k in KINDS)
              + f"{s['caption_share_of_kept']:>14.2f}{s['correct']:>9.2f}")
    write_json_atomic(Path(args.out), {"model": args.model, "frames": args.frames, "limit": args.limit,
                                       "exact": setup.exact,
                                       "prompt_tokens": mean_counts, "summary": summary, "items": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
