"""Which part of the memory-aware forward sets the peak memory of a long prefill.

Each phase of `adapters.hf.attention` (the layer's SDPA, the observer's probabilities, their GQA mean,
the spectrogram, the update) is wrapped so that every rise of the process's peak RSS (ru_maxrss) is
credited to the phase running when it happened; the rest (MLP, norms, the cache growing) is "elsewhere".
One process, one run: compare a policy with `--policy full` at the same length for its extra memory.

    python -m bench.peak_phases --length 8160 --policy namm-zero
    python -m bench.peak_phases --length 8160 --policy namm-zero --observe-rows 32
    python -m bench.peak_phases --length 8160 --policy full
"""
from __future__ import annotations

import argparse
import resource

import torch

PHASES = {
    "sdpa": "layer output (SDPA)",
    "group_probs": "observer probabilities (Q.K^T, softmax)",
    "group_mean": "GQA mean",
    "run_update": "update (BAM, selection)",
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def credit_phases() -> dict[str, float]:
    """Wrap the phases in place; returns the dict they credit (MiB of new peak per phase)."""
    import adapters.hf.attention as attention
    from core.spectrogram import StreamingSpectrogram

    credit: dict[str, float] = {}

    def wrap(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapped(*args, **kwargs):
            before = peak_mib()
            out = inner(*args, **kwargs)
            credit[label] = credit.get(label, 0.0) + peak_mib() - before
            return out

        setattr(owner, name, wrapped)

    for name, label in PHASES.items():
        wrap(attention, name, label)
    wrap(StreamingSpectrogram, "observe", "spectrogram (DFT, EMA, sample buffer)")
    return credit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--length", type=int, default=8160)
    parser.add_argument("--policy", default="namm-zero", help="a bench.policy_cost configuration: full, namm-zero, namm, h2o@0.25, ...")
    parser.add_argument("--observe-rows", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from adapters.hf import greedy_generate
    from adapters.loading import load_model
    from bench.policy_cost import make_policy

    torch.set_num_threads(args.threads)
    credit = credit_phases()
    model, _ = load_model(args.model)
    ids = torch.randint(1000, 40000, (1, args.length), generator=torch.Generator().manual_seed(0))
    loaded = peak_mib()
    greedy_generate(model, ids, make_policy(args.policy), max_new_tokens=args.new_tokens, observe_rows=args.observe_rows)
    peak = peak_mib()
    print(f"{args.model}, {args.policy}, {args.length} tokens, observe_rows {args.observe_rows}: "
          f"loaded {loaded:.0f} MiB, peak {peak:.0f} MiB, extra {peak - loaded:.0f} MiB")
    for label, mib in sorted(credit.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<42} {mib:7.1f} MiB of new peak")
    print(f"  {'elsewhere (MLP, norms, cache growth)':<42} {peak - loaded - sum(credit.values()):7.1f} MiB")


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
