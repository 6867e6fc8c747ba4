"""Time and peak memory of every memory policy on an embedded model (`--model`, default smollm2).

For each prompt length: the unmodified model (SDPA, DynamicCache) and, through the memory-aware
attention, the full cache, each baseline at 50% and 25% budget, the all-zero NAMM (evicts
nothing: isolates its cost), the shipped NAMM as it is (`namm`) and with a raised threshold
(`namm-evict`, keeps about 15% of a 4k random-token prompt) and a NAMM with random parameters
(evicts almost everything); `namm-x@B` is the shipped NAMM-X keeping B of the processed tokens (at
1.0 it observes and scores at every update and keeps everything). Every run is its own process so that peak memory is its own. A
configuration named twice in `--configs`, or a list run `--repeat` times, is measured several times:
the rounds are interleaved (every configuration once, then again), so load on a shared machine falls
on all of them alike, and the table shows medians and their ratios to the unmodified model's median
measured in the same invocation.
Policies run on the default attention path (attention computed once for output and observer); a `+exact`
suffix (`namm-zero+exact`) runs a policy with `exact=True` (SDPA output, every row observed apart).

    python -m bench.policy_cost --lengths 1024,2048,4096 --new-tokens 32 --out bench/results/policy_cost.json
    python -m bench.policy_cost --lengths 4096 --configs sdpa,namm-zero,namm-evict,h2o@0.25 --repeat 3 --threads 1
    python -m bench.policy_cost --model gemma3-270m --lengths 4096 --configs sdpa,namm-zero --repeat 2

On Gemma 3 a policy manages only the full-attention layers (one in six); the sliding layers keep their
own window, so the NAMM observes a sixth of the layers and its cost is a smaller share of a forward.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from core.atomic import write_json_atomic

BASELINES = ("recency", "h2o", "l2", "tova", "snapkv", "random")
SHIPPED_NAMM = Path(__file__).resolve().parents[1] / "checkpoints" / "namm-smollm2"
EVICT_THRESHOLD = 0.1  # the shipped NAMM with this threshold keeps about 15% of a 4k random-token prompt


def configs() -> list[str]:
    names = ["sdpa", "full", "namm-zero", "namm", "namm-evict", "namm-random"]
    for budget in ("0.5", "0.25"):
        names += [f"{b}@{budget}" for b in BASELINES]
    return names


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


EXACT = "+exact"


def split_exact(name: str) -> tuple[str, bool]:
    """(configuration, exact) of a name that may end in `+exact`."""
    return (name[: -len(EXACT)], True) if name.endswith(EXACT) else (name, False)


def make_policy(name: str):
    import torch

    from core.namm import NAMM
    from core.policies import FullCache
    from core.registry import make_policy as build

    if name == "full":
        return FullCache()
    if name == "namm-zero":
        return NAMM.zeros()
    if name == "namm":  # the shipped NAMM as it is
        return NAMM.from_pretrained(SHIPPED_NAMM)
    if name == "namm-evict":
        namm = NAMM.from_pretrained(SHIPPED_NAMM)
        namm.config.threshold = EVICT_THRESHOLD
        return namm
    if name == "namm-random":
        return NAMM(params=torch.randn(4172, generator=torch.Generator().manual_seed(1)) * 0.3)
    policy, budget = name.split("@")
    if policy == "namm-x":  # the shipped NAMM-X at a fixed budget; at 1.0 it scores every update, keeps all
        from eval.policy_setup import SHIPPED_NAMM as SHIPPED_NAMM_X  # the CLIs' default checkpoint

        namm = NAMM.from_pretrained(SHIPPED_NAMM_X)
        namm.set_budget(float(budget))
        return namm
    return build(policy, budget=float(budget))


def plain_generate(model, ids, new_tokens, chunk=512):
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    start = time.perf_counter()
    with torch.no_grad():
        for s in range(0, ids.shape[1], chunk):
            logits = model(input_ids=ids[:, s : s + chunk], cache=cache, use_cache=True, logits_to_keep=1).logits
        mid = time.perf_counter()
        for _ in range(new_tokens - 1):
            token = logits[:, -1].argmax(-1, keepdim=True)
            logits = model(input_ids=token, cache=cache, use_cache=True, logits_to_keep=1).logits
    return mid - start, time.perf_counter() - mid


def child(name: str, length: int, new_tokens: int, threads: int, model_name: str = "smollm2") -> dict:
    import torch

    from adapters.hf import greedy_generate
    from adapters.loading import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(model_name)
    ids = torch.randint(1000, 40000, (1, length), generator=torch.Generator().manual_seed(0))
    rss_loaded = rss_mib()
    result = {"config": name, "length": length, "new_tokens": new_tokens, "model": model_name}
    if name == "sdpa":
        result["prefill_s"], result["decode_s"] = plain_generate(model, ids, new_tokens)
        result.update(cache_fraction=1.0, observe_s=0.0, update_s=0.0)
    else:
        base, exact = split_exact(name)
        policy = make_policy(base)
        out = greedy_generate(model, ids, policy, max_new_tokens=new_tokens, exact=exact)
        result.update(prefill_s=out.prefill_seconds, decode_s=out.decode_seconds,
                      cache_fraction=out.cache_fraction, observe_s=out.observe_seconds,
                      update_s=out.update_seconds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(peak_rss_mib=peak, peak_over_loaded_mib=peak - rss_loaded)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="an embedded model: smollm2 or gemma3-270m")
    parser.add_argument("--lengths", default="1024,2048,4096")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--configs", default=",".join(configs()))
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the configuration list (interleaved)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench/results/policy_cost.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, int(args.lengths), args.new_tokens, args.threads, args.model)))
        return

    # Warm the converted-model cache once so no child pays for the conversion.
    from adapters.loading import resolve

    resolve(args.model)
    results = []
    names = args.configs.split(",") * max(1, args.repeat)
    for length in (int(x) for x in args.lengths.split(",")):
        for name in names:
            cmd = [sys.executable, "-m", "bench.policy_cost", "--child", name, "--lengths", str(length),
                   "--new-tokens", str(args.new_tokens), "--threads", str(args.threads), "--model", args.model]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if proc.returncode != 0:
                sys.exit(f"{name} at {length} tokens failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(row)
            print(f"  {length:>5} {name:<14} prefill {row['prefill_s']:.2f}s decode {row['decode_s']:.2f}s "
                  f"cache {row['cache_fraction']:.2f} peak {row['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    report(results)
    out = Path(args.out)
    write_json_atomic(out, {"model": args.model, "threads": args.threads, "command": " ".join(sys.argv[1:]), "results": results})
    print(f"\nwrote {out}")


MEASURES = ("cache_fraction", "prefill_s", "decode_s", "observe_s", "update_s", "peak_rss_mib", "peak_over_loaded_mib")


def medians(results: list[dict]) -> dict[int, dict[str, dict]]:
    """{length: {config: median of each measure over its runs, plus the run count}}, in first-seen order."""
    runs: dict[int, dict[str, list[dict]]] = {}
    for r in results:
        runs.setdefault(r["length"], {}).setdefault(r["config"], []).append(r)
    return {length: {name: {**{k: statistics.median(r[k] for r in rows) for k in MEASURES}, "runs": len(rows)}
                     for name, rows in by_config.items()}
            for length, by_config in runs.items()}


def report(results: list[dict]) -> None:
    print(f"\n{'length':>6} {'config':<14}{'runs':>5}{'cache':>6}{'prefill s':>10}{'x sdpa':>7}{'decode s':>9}"
          f"{'x sdpa':>7}{'observe%':>9}{'update%':>8}{'peak MiB':>9}{'x sdpa':>7}{'extra MiB':>10}{'x sdpa':>7}")
    for length, rows in medians(results).items():
        ref = rows.get("sdpa")
        for name, r in rows.items():
            total = r["prefill_s"] + r["decode_s"]
            ratio = (lambda key: r[key] / ref[key] if ref and ref[key] else float("nan"))
            print(f"{length:>6} {name:<14}{r['runs']:>5}{r['cache_fraction']:>6.2f}{r['prefill_s']:>10.2f}"
                  f"{ratio('prefill_s'):>7.2f}{r['decode_s']:>9.2f}{ratio('decode_s'):>7.2f}"
                  f"{100 * r['observe_s'] / total:>9.1f}{100 * r['update_s'] / total:>8.1f}{r['peak_rss_mib']:>9.0f}"
                  f"{ratio('peak_rss_mib'):>7.2f}{r['peak_over_loaded_mib']:>10.0f}{ratio('peak_over_loaded_mib'):>7.2f}")


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
