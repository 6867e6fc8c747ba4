"""A short language demo on the embedded model: every memory policy on a few generated
long-context items, one table of score, cache fraction and speed.

    python -m eval.demo [--length 1000] [--n 3] [--budget 0.5] [--ckpt checkpoints/namm-x-smollm2]

Every policy updates on one schedule: the NAMM checkpoint's where its config.json sets it.
"""
from __future__ import annotations

if __name__ == "__main__":  # a Ctrl-C while the imports below load: one line, status 130
    from core.errors import interrupt_quietly_while_starting

    interrupt_quietly_while_starting()

import argparse

import torch
from tqdm import tqdm

from adapters.hf import greedy_generate
from adapters.loading import load_model
from core.policies import Schedule
from eval import policy_setup
from eval.lm import builtin_tasks

DEFAULT_POLICIES = "full,namm,h2o,l2,recency,tova,snapkv,expected_attention,adakv(snapkv),random"
DEFAULT_SCHEDULE = Schedule(512, at_prompt_end=True)  # where no NAMM checkpoint or option sets it


def run(args, setup: policy_setup.PolicySetup) -> list[dict]:
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    items = [(task, item) for task in args.tasks.split(",")
             for item in builtin_tasks.make_items(task, args.n, args.length, seed=args.seed, tokenizer=tokenizer)]
    prompts = [tokenizer(builtin_tasks.render(item, tokenizer), return_tensors="pt").input_ids for _, item in items]
    rows = []
    progress = tqdm(total=len(setup.names) * len(items), desc="demo", unit="item")
    for name in setup.names:
        scores, fractions, prefill_s, decode_s, n_decoded = [], [], 0.0, 0.0, 0
        for (task, item), ids in zip(items, prompts):
            policy = setup.build(name)
            out = greedy_generate(model, ids, policy, max_new_tokens=builtin_tasks.MAX_NEW_TOKENS[task],
                                  eos_token_id=tokenizer.eos_token_id, exact=setup.exact)
            prefill_s += out.prefill_seconds
            decode_s += out.decode_seconds
            n_decoded += max(0, len(out.tokens[0]) - 1)
            scores.append(builtin_tasks.score_item(item, tokenizer.decode(out.tokens[0], skip_special_tokens=True)))
            fractions.append(out.cache_fraction)
            progress.update()
        rows.append({"policy": name, "score": 100 * sum(scores) / len(scores),
                     "cache": sum(fractions) / len(fractions), "prefill_s": prefill_s / len(items),
                     "decode_tok_s": n_decoded / decode_s if decode_s > 0 else float("nan")})
    progress.close()
    return rows


def print_table(rows, args, setup: policy_setup.PolicySetup) -> None:
    print(f"\n{args.model}, tasks {args.tasks}, ~{args.length} tokens, {args.n} items per task, "
          f"baselines at {args.budget:.0%} budget")
    print(setup.schedule_line() + policy_setup.path_line(setup.exact))
    w = max([10] + [len(r["policy"]) + 1 for r in rows])  # adakv(...) names are long
    print(f"{'policy':<{w}}{'score':>8}{'cache':>8}{'prefill s':>11}{'decode tok/s':>14}")
    for r in rows:
        print(f"{r['policy']:<{w}}{r['score']:>8.1f}{r['cache']:>8.2f}{r['prefill_s']:>11.2f}{r['decode_tok_s']:>14.1f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tasks", default="passkey,kv_retrieval")
    parser.add_argument("--policies", default=DEFAULT_POLICIES)
    parser.add_argument("--length", type=int, default=1000, help="prompt length in tokens")
    parser.add_argument("--n", type=int, default=3, help="items per task")
    parser.add_argument("--budget", type=float, default=0.5, help="baselines' cache budget (fraction)")
    parser.add_argument("--n-up", type=int, default=None,
                        help=f"every policy's update interval in tokens (default: the NAMM checkpoint's, "
                             f"else {DEFAULT_SCHEDULE.n_up})")
    parser.add_argument("--prompt-end", action=argparse.BooleanOptionalAction, default=None,
                        help="every policy also updates when a prompt ends (default: as the NAMM checkpoint "
                             "says, else yes)")
    parser.add_argument("--ckpt", default=None, help=policy_setup.CKPT_HELP)
    policy_setup.add_exact_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    setup = check_args(args)
    print_table(run(args, setup), args, setup)


def check_args(args) -> policy_setup.PolicySetup:
    """Every argument before the model loads (a UserError: one line, status 2)."""
    from eval.lm import checks

    checks.name_list("--tasks", args.tasks, checks.known_tasks("builtin"))
    names = checks.name_list("--policies", args.policies, checks.policy_names())
    checks.refuse_replaying(names, "eval.demo compresses whole prompts with their question")
    for option, value, minimum in (("--n", args.n, 1), ("--length", args.length, 64),
                                   ("--threads", args.threads, 1), ("--seed", args.seed, 0)):
        checks.at_least(option, value, minimum)
    return policy_setup.resolve(args, names, DEFAULT_SCHEDULE)


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2
