"""A warning when a half-precision dtype is slow on this CPU.

bfloat16 and float16 are fast on CPUs with native support (avx512_bf16, AMX) and emulated elsewhere: on an
AVX2-only CPU a bfloat16 matmul took about 30x as long as the same one in float32, so `--dtype bfloat16`
made evaluations 2-8x slower instead of about 2.4x faster. The loaders time one small matmul in both dtypes
and say so on stderr when the half dtype is the slower.
"""
from __future__ import annotations

import functools
import sys
import time

import torch

SLOWER_THAN = 2.0  # warn when the half dtype's matmul takes this many times float32's


def _best_seconds(dtype: torch.dtype, repeats: int = 3) -> float:
    a = torch.ones(128, 576, dtype=dtype)
    b = torch.ones(576, 576, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=None)
def cpu_slowdown(dtype: torch.dtype) -> float:
    """How many times longer a [128 x 576] @ [576 x 576] matmul takes in `dtype` than in float32 here."""
    return _best_seconds(dtype) / max(_best_seconds(torch.float32), 1e-9)


def warn_if_slow(dtype: torch.dtype, device) -> str | None:
    """Print (and return) a one-line note when `dtype` on the CPU is slower than float32; None otherwise."""
    if dtype not in (torch.bfloat16, torch.float16) or torch.device(device).type != "cpu":
        return None
    ratio = cpu_slowdown(dtype)
    if ratio < SLOWER_THAN:
        return None
    name = str(dtype).removeprefix("torch.")
    message = (f"note: {name} matmuls take {ratio:.0f}x as long as float32 on this CPU (capability "
               f"{torch.backends.cpu.get_cpu_capability()}, no native {name}): --dtype float32 is faster here")
    print(message, file=sys.stderr)
    return message
