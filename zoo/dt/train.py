"""Train a small Decision Transformer (transformers' DecisionTransformerModel) with the HF recipe.

    python -m zoo.dt.train --env hopper --data .cache/d4rl/hopper-medium-v2.hdf5 \
        --out checkpoints/dt-hopper --max-minutes 15 --overwrite

A non-empty --out (the default is the shipped checkpoints/dt-<env>) is refused unless --overwrite is
given; the folder is then replaced whole, atomically.

Context K=20, returns-to-go / 1000, dataset state mean/std, masked action MSE on
left-padded windows, timestep embedding; AdamW with linear warm-up then cosine decay and
gradient clipping at 0.25. Saves save_pretrained files plus dt_meta.json (see
eval.rl.dt_model.load_dt).
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse
import sys
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import DecisionTransformerConfig, DecisionTransformerModel

from core.destination import add_overwrite_argument, check_destination
from core.errors import on_interrupt
from eval.rl.d4rl import episode_returns, load_episodes
from eval.rl.dt_model import save_dt
from eval.rl.envs import canonical_env
from eval.rl.scores import normalized_score

from .dt_data import WindowSampler


def build_model(state_dim: int, act_dim: int, hidden: int, layers: int, heads: int,
                context: int, max_ep_len: int = 1000, dropout: float = 0.1) -> DecisionTransformerModel:
    cfg = DecisionTransformerConfig(
        state_dim=state_dim, act_dim=act_dim, hidden_size=hidden, n_layer=layers, n_head=heads,
        n_inner=4 * hidden, activation_function="relu", max_ep_len=max_ep_len,
        n_positions=3 * context, action_tanh=True, resid_pdrop=dropout, embd_pdrop=dropout,
        attn_pdrop=dropout, bos_token_id=None, eos_token_id=None)
    return DecisionTransformerModel(cfg)


def lr_at(step: int, progress: float, warmup: int, peak: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% of peak as `progress`
    (fraction of the step or time budget used, whichever is larger) goes to 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, max(0.0, progress))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True)
    ap.add_argument("--data", type=str, help="D4RL HDF5 path or minari:<id> "
                    "(default .cache/d4rl/<env>-medium-v2.hdf5)")
    ap.add_argument("--out", type=Path, help="default checkpoints/dt-<env>")
    ap.add_argument("--context", type=int, default=20)
    ap.add_argument("--scale", type=float, default=1000.0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--warmup", type=int, default=400)
    ap.add_argument("--max-minutes", type=float, default=18.0)
    ap.add_argument("--target-return", type=float,
                    help="return to condition on (default: the dataset's best episode return)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    add_overwrite_argument(ap)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env = canonical_env(args.env)
    data = args.data or f".cache/d4rl/{env}-medium-v2.hdf5"
    out = check_destination(args.out or Path(f"checkpoints/dt-{env}"), args.overwrite, "--out folder")
    on_interrupt(f"nothing was written to {out} (it is written once, when training ends); rerun to train again")
    episodes = load_episodes(data)
    sampler = WindowSampler(episodes, context=args.context, scale=args.scale, seed=args.seed)
    model = build_model(sampler.state_dim, sampler.act_dim, args.hidden, args.layers,
                        args.heads, args.context)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rets = episode_returns(episodes)
    target = args.target_return if args.target_return is not None else float(rets.max())
    print(f"{len(episodes)} episodes, {sum(len(e['rewards']) for e in episodes)} steps, "
          f"mean return {rets.mean():.1f}, max {rets.max():.1f}; "
          f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)

    t0, losses, step = time.time(), [], 0
    model.train()
    while step < args.steps and (time.time() - t0) / 60 < args.max_minutes:
        for group in opt.param_groups:
            progress = max(step / args.steps, (time.time() - t0) / 60 / args.max_minutes)
            group["lr"] = lr_at(step, progress, args.warmup, args.lr)
        batch = sampler.sample(args.batch)
        _, action_preds, _ = model(**batch, return_dict=False)
        mask = batch["attention_mask"] > 0
        loss = ((action_preds[mask] - batch["actions"][mask]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 200 == 0:
            print(json.dumps({"step": step, "loss": float(np.mean(losses[-200:])),
                              "lr": opt.param_groups[0]["lr"],
                              "minutes": round((time.time() - t0) / 60, 2)}), flush=True)

    model.eval()
    meta = {"env": env, "state_mean": sampler.state_mean.tolist(),
            "state_std": sampler.state_std.tolist(), "scale": args.scale,
            "target_return": target, "context": args.context,
            "dataset": Path(data).name if not str(data).startswith("minari:") else data,
            "dataset_mean_return": float(rets.mean()),
            "dataset_mean_normalized_score": float(normalized_score(env, rets).mean()),
            "train": {"steps": step, "final_loss": float(np.mean(losses[-200:])),
                      "minutes": round((time.time() - t0) / 60, 2),
                      **{k: getattr(args, k) for k in ("hidden", "layers", "heads", "batch",
                                                        "lr", "weight_decay", "seed")}}}
    save_dt(model, out, meta)
    print(f"saved {out} after {step} steps", flush=True)


if __name__ == "__main__":
    from core.errors import cli_main

    sys.exit(cli_main(main))
