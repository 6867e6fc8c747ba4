"""Evaluate a Decision Transformer checkpoint with the window protocol.

    python -m eval.rl.evaluate_dt --ckpt checkpoints/dt-hopper --episodes 10 [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from .dt_model import load_dt
from .rollout import evaluate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, type=Path)
    ap.add_argument("--env", help="needed for checkpoints without dt_meta.json")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=10, help="environments stepped together")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target-return", type=float)
    ap.add_argument("--max-steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the summary json here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = load_dt(args.ckpt, env=args.env)
    res = evaluate(bundle, args.env, episodes=args.episodes, batch_size=args.batch,
                   seed=args.seed, target_return=args.target_return, max_steps=args.max_steps)
    summary = {**res.summary(), "checkpoint": args.ckpt.name, "seeds": res.seeds,
               "returns": [round(float(r), 2) for r in res.returns],
               "lengths": [int(n) for n in res.lengths]}
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=args.out.name + ".", suffix=".tmp", dir=args.out.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
