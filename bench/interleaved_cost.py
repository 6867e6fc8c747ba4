"""Time ratios of memory policies to the unmodified model, interleaved forward by forward.

`bench.policy_cost` runs each configuration in its own process (so that peak memory is its own);
on a loaded machine a configuration that happens to run while another job is busy looks slower.
Here one process holds one cache per configuration and feeds them the same prompt chunk by chunk
and the same decoding steps token by token, rotating the order at every step, so load falls on
every configuration alike. Only the model calls are timed. Each configuration decodes its own
greedy tokens. No peak memory here: use `bench.policy_cost` for that.

    python -m bench.interleaved_cost --lengths 2048,4096 --configs sdpa,full,namm-zero,namm-evict --threads 1
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from core.atomic import write_json_atomic

from bench.policy_cost import make_policy, split_exact


def forward(model, ids, cache, start, policy=None, exact=False, prompt_final=None):
    """One timed model call (attaching the policy is not timed)."""
    from adapters.hf import attach

    positions = torch.arange(start, start + ids.shape[1]).unsqueeze(0)
    kwargs = dict(input_ids=ids, cache=cache, position_ids=positions, use_cache=True, logits_to_keep=1)
    if policy is None:
        began = time.perf_counter()
        logits = model(**kwargs).logits[:, -1]
        return logits, time.perf_counter() - began
    with attach(model, policy, exact=exact) as session:
        if prompt_final is not None:  # True: this forward ends the prompt; False: more of the prompt follows
            session.prompt.feeding(last=prompt_final)
        began = time.perf_counter()
        logits = model(**kwargs).logits[:, -1]
        return logits, time.perf_counter() - began


@torch.no_grad()
def measure(model, length: int, names: list[str], new_tokens: int, chunk: int = 512) -> dict:
    from transformers import DynamicCache

    from adapters.hf import MemoryCache

    ids = torch.randint(1000, 40000, (1, length), generator=torch.Generator().manual_seed(0))
    runs = {}
    for name in names:
        base, exact = split_exact(name)
        policy = None if base == "sdpa" else make_policy(base)
        cache = DynamicCache(config=model.config) if policy is None else MemoryCache(model.config.num_hidden_layers)
        runs[name] = dict(policy=policy, exact=exact, cache=cache, logits=None, prefill_s=0.0, decode_s=0.0)
    starts = list(range(0, length, chunk))
    for i, start in enumerate(starts):
        for name in names[i % len(names):] + names[: i % len(names)]:
            r = runs[name]
            r["logits"], seconds = forward(model, ids[:, start : start + chunk], r["cache"], start, r["policy"],
                                           r["exact"], start + chunk >= length)
            r["prefill_s"] += seconds
    for step in range(new_tokens - 1):
        for name in names[step % len(names):] + names[: step % len(names)]:
            r = runs[name]
            token = r["logits"].argmax(-1, keepdim=True)
            r["logits"], seconds = forward(model, token, r["cache"], length + step, r["policy"], r["exact"], None)
            r["decode_s"] += seconds
    out = {}
    for name, r in runs.items():
        fraction = 1.0 if r["policy"] is None else r["cache"].fraction()
        out[name] = dict(prefill_s=r["prefill_s"], decode_s=r["decode_s"], cache_fraction=fraction)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1024,2048,4096")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--configs", default="sdpa,full,namm-zero,namm-evict,namm-zero+exact")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="bench/results/interleaved_cost.json")
    args = parser.parse_args(argv)
    from adapters.loading import load_model

    torch.set_num_threads(args.threads)
    model, _ = load_model("smollm2")
    names = args.configs.split(",")
    if names[0] != "sdpa":
        sys.exit("the first configuration must be sdpa (the reference of the ratios)")
    results = {}
    print(f"{'length':>6} {'config':<18}{'cache':>6}{'prefill s':>10}{'x sdpa':>7}{'decode s':>9}{'x sdpa':>7}")
    for length in (int(x) for x in args.lengths.split(",")):
        rows = measure(model, length, names, args.new_tokens)
        results[length] = rows
        ref = rows["sdpa"]
        for name, r in rows.items():
            print(f"{length:>6} {name:<18}{r['cache_fraction']:>6.2f}{r['prefill_s']:>10.2f}"
                  f"{r['prefill_s'] / ref['prefill_s']:>7.2f}{r['decode_s']:>9.2f}{r['decode_s'] / ref['decode_s']:>7.2f}",
                  flush=True)
    out = Path(args.out)
    write_json_atomic(out, {"threads": args.threads, "command": " ".join(sys.argv[1:]), "results": results})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
