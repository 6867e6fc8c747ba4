"""Our L2, SnapKV, TOVA, Expected Attention, adakv(snapkv) and KVzip baselines side by side with NVIDIA
kvpress's presses on the same prompts.

    python -m bench.kvpress_parity --kvpress-path DIR --n 10 --length 500 --out bench/results/kvpress_parity.json
    python -m bench.kvpress_parity --kvpress-path DIR --n 10 --length 500 --timing 3   # also seconds per item

kvpress is not a project dependency. Put it (and the modules its package __init__ imports) in a folder
outside the project's environment, without touching torch or transformers:

    python -m pip install --no-deps --target DIR kvpress==0.5.5 "cachetools<6" datasets "fire<0.7" \
        "dill<0.4.2" "multiprocess<0.70.20" pyarrow xxhash pandas termcolor

and pass that folder as --kvpress-path (or in the KVPRESS_PATH environment variable).

For each press (KnormPress, SnapKVPress with window 32 and kernel 7, TOVAPress, ExpectedAttentionPress and
AdaKVPress(SnapKVPress) with their defaults; `--presses` picks some) at a compression ratio
(default 0.5), each of `--n` built-in passkey prompts on SmolLM2 is compressed once at the end of its
prefill by kvpress and by our policy (budget 1 - ratio of the prompt, one update at the prompt's end).
Compared: (a) the kept positions per layer and KV head (identical sets, Jaccard overlap) and (b) the
greedy answers. Two protocols: "whole" compresses the whole prompt; "query-agnostic" compresses the
context only and appends the question uncompressed (kvpress's pipeline; our `context_end`).

kvpress 0.5.5 declares transformers<5.3. Its own hook (`with press(model)`) is tried first on a short
prompt; where it fails (transformers 5 passes the cache as `cache`, no longer as `past_key_values`, and
no `cache_position`), the failure is recorded in the results and the bench drives the press itself: the
same hook body as kvpress's `BasePress.forward_hook`, calling the press's own `compress` on the layer's
inputs, keys and values during the prefill forward. The selection rules measured are kvpress's code,
unmodified. Kept positions are read back by matching each kept key row to the uncompressed cache's rows
(kvpress stores the kept keys in score order, not in position order).

AdaKVPress keeps every key and masks some per head (`module.masked_key_indices`, hidden while decoding by
kvpress's attention patch): its kept set per head is the unmasked positions, as ours is adakv's visible
(not hidden) positions.

KVzipPress (`--presses kvzip --plain`, asked for by name) runs with `layerwise=True`: the same share of each
layer pruned, the pruned (head, position) pairs chosen over the layer's heads together with no per-head
safeguard, which is our `adakv(kvzip)` with `alpha_safeguard` 0 (row `adakv(kvzip)`); our plain `kvzip` keeps the
same count in every head (it differs by design). Its own `__call__` fails on transformers 5 as the hook does
(it reads `past_key_values`), so `kvzip_on_context` drives the press's own `prepare`, `forward_hook` (scoring)
and `compress_post` (selection). `--plain` renders the prompts as plain text with the chat template cleared:
kvpress leaves a template's prefix out of its reconstruction (scoring it 0), ours reconstructs it.

Rows "<policy>@kvpress_count" run our policy with kvpress's number of kept tokens (int(P * (1 - ratio)),
a token-count budget) instead of our ceil(P * (1 - ratio)): a diagnostic that separates the rounding
convention from the scoring rule. "full" checks the harness: both decoding paths with no compression.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch

from core.atomic import write_json_atomic

PRESSES = ("l2", "snapkv", "tova", "expected_attention", "adakv_snapkv", "kvzip")
DEFAULT_PRESSES = PRESSES[:-1]  # kvzip needs plain prompts (--plain): asked for by name
OURS = {"l2": ("l2",), "snapkv": ("snapkv",), "tova": ("tova", "tova_per_head"),
        "expected_attention": ("expected_attention",), "adakv_snapkv": ("adakv(snapkv)",),
        "kvzip": ("adakv(kvzip)", "kvzip")}
PRESS_LABELS = {"l2": "KnormPress", "snapkv": "SnapKVPress", "tova": "TOVAPress",
                "expected_attention": "ExpectedAttentionPress", "adakv_snapkv": "AdaKVPress(SnapKVPress)",
                "kvzip": "KVzipPress(layerwise)"}
PROTOCOLS = ("whole", "query-agnostic")


def import_kvpress(path: str | None):
    """Import kvpress from `path` (put first on sys.path). Must run before anything in this process calls
    `attach`: importing kvpress wraps every attention function then registered with transformers (its
    `patch_attention_functions`), and its wrapper passes `dropout` positionally into the `scaling` slot of
    our "namm" attention function (TypeError: multiple values for argument 'scaling')."""
    if "adapters.hf.attention" in sys.modules and "namm" in _registered_attention():
        raise RuntimeError("kvpress must be imported before our attention function is registered (see import_kvpress)")
    if path:
        sys.path.insert(0, str(Path(path).resolve()))
    try:
        import kvpress
    except ImportError as error:
        raise SystemExit(f"kvpress is not importable ({error}). Install it outside the project's environment:\n"
                         f"  python -m pip install --no-deps --target DIR kvpress==0.5.5 'cachetools<6' datasets "
                         f"'fire<0.7' 'dill<0.4.2' 'multiprocess<0.70.20' pyarrow xxhash pandas termcolor\n"
                         f"then pass --kvpress-path DIR (or KVPRESS_PATH=DIR)") from None
    return kvpress


def _registered_attention():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return set(ALL_ATTENTION_FUNCTIONS.keys())


def kvpress_count(n: int, ratio: float) -> int:
    """Tokens a kvpress ScorerPress keeps of `n` (kvpress.utils.compute_n_kept): rounded down, at least 1."""
    return max(1, int(n * (1 - ratio)))


def make_press(kvpress, name: str, ratio: float, window: int, kernel: int):
    if name == "l2":
        return kvpress.KnormPress(compression_ratio=ratio)
    if name == "snapkv":
        return kvpress.SnapKVPress(compression_ratio=ratio, window_size=window, kernel_size=kernel)
    if name == "tova":
        return kvpress.TOVAPress(compression_ratio=ratio)
    if name == "expected_attention":  # kvpress's defaults: 512 future positions, 4 sinks, covariance, value norms
        return kvpress.ExpectedAttentionPress(compression_ratio=ratio)
    if name == "adakv_snapkv":  # alpha_safeguard 0.2, kvpress's default
        return kvpress.AdaKVPress(kvpress.SnapKVPress(compression_ratio=ratio, window_size=window, kernel_size=kernel))
    if name == "kvzip":  # the same share pruned in every layer, chosen over the layer's heads together
        return kvpress.KVzipPress(compression_ratio=ratio, layerwise=True)
    raise ValueError(name)


def make_ours(name: str, budget, window: int, kernel: int):
    from core.policies import AdaKV
    from core.registry import make_policy

    extra = {"window": window, "kernel": kernel} if name in ("snapkv", "adakv(snapkv)") else {}
    # one update, at the prompt's (or the context's) end: n_up larger than any prompt here
    if name == "adakv(kvzip)":  # KVzipPress spreads a layer's pruning over its heads with no per-head safeguard
        return AdaKV(make_policy("kvzip", budget, n_up=10**6, update_at_prompt_end=True), alpha_safeguard=0.0)
    return make_policy(name, budget, n_up=10**6, update_at_prompt_end=True, **extra)


def is_kvzip(press) -> bool:
    return type(press).__name__ == "KVzipPress"


@contextmanager
def kvzip_on_context(press, model, tokenizer, cache, context_ids, scores: dict | None = None):
    """KVzipPress's own `__call__` for transformers 5, where it fails (it reads the cache as `past_key_values`
    from the model's and the attention layers' keywords; transformers 5 passes `cache`). The block prefills the
    context `context_ids` into `cache`; then, as kvpress does, each chunk's reconstruction prompt (the press's own
    `prepare`) runs through the model with the press's own `forward_hook` on every attention layer (its
    `score_kvzip` scores the chunk and cuts the cache back to the context), and the press's own `compress_post`
    picks the masked (head, position) pairs. Plain prompts only (a tokenizer without a chat template): there
    kvpress's template prefix is empty and its suffix a newline (KVzipPress.__call__), as ours. `scores`
    receives the press's scores per layer [1, H, n]."""
    if getattr(tokenizer, "chat_template", None):
        raise ValueError("the KVzip comparison runs on plain prompts: clear the tokenizer's chat template (--plain)")
    language_model = _language_model(model)
    press.post_init_from_model(model)
    press.prefix_length = 0
    press._suffix_ids = tokenizer("\n", add_special_tokens=False, return_tensors="pt").input_ids

    def hook(module, args, kwargs, output):
        kwargs = dict(kwargs, past_key_values=kwargs.get("cache", kwargs.get("past_key_values")))
        return press.forward_hook(module, args, kwargs, output)

    try:
        yield
        press._context_ids, press._cache = context_ids, cache
        press.context_length = context_ids.shape[1]
        for layer in language_model.layers:
            layer.self_attn.rotary_emb = language_model.rotary_emb
        pairs = press.prepare(model, tokenizer)
        hooks = [layer.self_attn.register_forward_hook(hook, with_kwargs=True) for layer in language_model.layers]
        try:
            press.start_idx = press.prefix_length
            for chunk, repeat in pairs:
                press.end_idx = press.start_idx + chunk.shape[1]
                start = cache.get_seq_length()  # the context's length: each chunk's tokens leave the cache
                positions = torch.arange(start, start + repeat.shape[1]).unsqueeze(0)
                language_model(input_ids=repeat, position_ids=positions, use_cache=True,
                               **{_cache_keyword(model): cache})
                press.start_idx = press.end_idx
        finally:
            for h in hooks:
                h.remove()
        press.compress_post(model)
        if scores is not None:
            for layer in range(press.score_val.shape[0]):
                scores[layer] = press.score_val[layer].detach().clone()
    finally:
        press._reset_internal_parameters()


def press_context(press, model, native: bool, tokenizer, cache, context_ids, scores: dict | None = None):
    """The block in which the context's prefill runs under `press`: KVzip's driver, kvpress's own hook where it
    works, else `press_on_prefill`; with `scores`, the press's scores per layer are recorded there."""
    from contextlib import ExitStack

    if is_kvzip(press):
        return kvzip_on_context(press, model, tokenizer, cache, context_ids, scores)
    stack = ExitStack()
    if scores is not None:
        stack.enter_context(recording_scores(press, scores))
    stack.enter_context(press(model) if native else press_on_prefill(press, model))
    return stack


def _language_model(model):
    """The decoder whose layers the presses hook: a LLaVA's language model, else the model's own."""
    return model.model.language_model if hasattr(model.model, "language_model") else model.model


def _cache_keyword(model) -> str:
    """The keyword the model's forward takes its cache by: `cache` in transformers 5, else `past_key_values`."""
    import inspect

    params = inspect.signature(model.model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _forward(model, ids, cache, start: int):
    positions = torch.arange(start, start + ids.shape[1]).unsqueeze(0)
    out = model(input_ids=ids, position_ids=positions, use_cache=True, logits_to_keep=1,
                **{_cache_keyword(model): cache})
    return out.logits[:, -1]


def probe_native_hook(kvpress, model, ids) -> dict:
    """Run kvpress's own hook (`with press(model)`) on a short prompt; what happened, with kvpress's line."""
    from transformers import DynamicCache

    press = kvpress.KnormPress(compression_ratio=0.5)
    try:
        with press(model), torch.no_grad():
            _forward(model, ids, DynamicCache(), 0)
        return {"works": True}
    except Exception as error:  # noqa: BLE001 - the point is to record whatever kvpress raises
        frames = [f for f in traceback.extract_tb(error.__traceback__) if "kvpress" in f.filename]
        where = frames[-1] if frames else traceback.extract_tb(error.__traceback__)[-1]
        file = where.filename[where.filename.rfind("kvpress"):] if "kvpress" in where.filename else where.filename
        return {"works": False, "error": f"{type(error).__name__}: {error}", "file": file, "line": where.lineno,
                "source": where.line}


@contextmanager
def recording_scores(press, scores: dict):
    """Within the block, `scores` receives the press's scores per layer (its `score` output, as `compress`
    used it; a wrapper's (AdaKVPress) from the press it wraps); the press is otherwise untouched."""
    press = getattr(press, "press", press)
    score = press.score

    def recording(module, *args, **kwargs):
        out = score(module, *args, **kwargs)
        scores[module.layer_idx] = out.detach().clone()
        return out

    press.score = recording
    try:
        yield
    finally:
        del press.score  # the class's method again


@contextmanager
def press_on_prefill(press, model):
    """kvpress's `BasePress.__call__` and `forward_hook` (base_press.py) for transformers 5: the cache comes as
    `cache`, and every forward inside this block is the prefill (kvpress tells it from `cache_position`, which
    transformers 5 no longer passes). The quantized-cache branch is left out (a plain DynamicCache here)."""
    from kvpress.utils import extract_keys_and_values

    press.post_init_from_model(model)
    language_model = _language_model(model)

    def hook(module, args, kwargs, output):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        keys, values = extract_keys_and_values(cache, module.layer_idx)
        keys, values = press.compress(module, kwargs["hidden_states"], keys, values, output[1], kwargs)
        layer = cache.layers[module.layer_idx]
        layer.keys, layer.values = keys, values
        return output

    hooks = []
    try:
        for layer in language_model.layers:
            layer.self_attn.rotary_emb = language_model.rotary_emb
            hooks.append(layer.self_attn.register_forward_hook(hook, with_kwargs=True))
        yield
    finally:
        for h in hooks:
            h.remove()


def kept_positions(full_keys: list[torch.Tensor], cache) -> list[list[list[int]]]:
    """Per layer and KV head, the positions whose keys a compressed cache holds: each kept key row is found
    among the rows of the uncompressed cache's keys `full_keys` (per layer [1, H, P, D]), which must be distinct."""
    out = []
    for layer, full in enumerate(full_keys):
        kept = cache.layers[layer].keys
        heads = []
        for h in range(full.shape[1]):
            rows = {full[0, h, i].numpy().tobytes(): i for i in range(full.shape[2])}
            if len(rows) != full.shape[2]:
                raise ValueError(f"layer {layer} head {h}: two positions have identical keys; positions are ambiguous")
            heads.append(sorted(rows[kept[0, h, j].numpy().tobytes()] for j in range(kept.shape[2])))
        out.append(heads)
    return out


ZONES = ("newest", "first_half_kernel", "half_kernel_before_window", "tie_at_kvpress_cutoff", "other")


def zone(position: int, n: int, window: int, kernel: int, tied: bool) -> str:
    """Why a position may be kept by one side only, in a compressed span of `n` tokens: it is the newest
    token, among the first or the last kernel // 2 tokens before SnapKV's window (its pooling edges), or its
    kvpress score ties with one on the other side of kvpress's cut (`tied`: top-k tie-breaking), else "other"."""
    if position == n - 1:
        return "newest"
    if position < kernel // 2:
        return "first_half_kernel"
    if n - window - kernel // 2 <= position < n - window:
        return "half_kernel_before_window"
    return "tie_at_kvpress_cutoff" if tied else "other"


def compare_sets(ours: list[list[list[int]]], theirs: list[list[list[int]]], n: int, window: int, kernel: int,
                 kv_scores: list[torch.Tensor] | None = None) -> dict:
    """Identical kept sets, Jaccard overlap and containment over every (layer, KV head); where the positions
    kept by one side only lie (`zone`; `kv_scores`: kvpress's scores per layer [1, H, n], for ties), and how
    many heads differ in each layer."""
    same = jaccard = theirs_in_ours = 0
    pairs = 0
    zones = {side: {z: 0 for z in ZONES} for side in ("only_ours", "only_kvpress")}
    differing_per_layer = []
    for layer, (layer_o, layer_t) in enumerate(zip(ours, theirs, strict=True)):
        differing = 0
        for h, (a, b) in enumerate(zip(layer_o, layer_t, strict=True)):
            last_in = first_out = None
            if kv_scores is not None:  # kvpress's lowest kept score and highest dropped score
                head_scores = kv_scores[layer][0, h]
                top = head_scores.topk(min(len(b) + 1, head_scores.shape[0])).values
                last_in, first_out = top[len(b) - 1], (top[len(b)] if len(top) > len(b) else None)
            a, b = set(a), set(b)
            pairs += 1
            same += a == b
            differing += a != b
            jaccard += len(a & b) / len(a | b)
            theirs_in_ours += b <= a
            for side, only in (("only_ours", a - b), ("only_kvpress", b - a)):
                for p in only:
                    # dropped by kvpress yet scored as its lowest kept one, or kept yet scored as its best dropped
                    edge = last_in if side == "only_ours" else first_out
                    tied = edge is not None and bool(head_scores[p] == edge)
                    zones[side][zone(p, n, window, kernel, tied)] += 1
        differing_per_layer.append(differing)
    return {"pairs": pairs, "identical": same, "jaccard_sum": jaccard, "theirs_in_ours": theirs_in_ours,
            "differing_positions": zones, "differing_heads_per_layer": differing_per_layer}


def kvpress_run(model, press, ids, context_end: int | None, new_tokens: int, eos: set[int], full_keys,
                native: bool = False, tokenizer=None):
    """Compress the prompt (or its first `context_end` tokens) with `press` at prefill, then decode greedily as
    kvpress's pipeline does (question in one forward at positions after the context, then one token at a time).
    `native`: through kvpress's own hook (`with press(model)`), else through `press_on_prefill`."""
    from transformers import DynamicCache

    cache = DynamicCache()
    n_prompt = ids.shape[1]
    end = n_prompt if context_end is None else context_end
    scores: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        if press is None:
            logits = _forward(model, ids[:, :end], cache, 0)
        else:
            with press_context(press, model, native, tokenizer, cache, ids[:, :end], scores):
                logits = _forward(model, ids[:, :end], cache, 0)
        kept = kept_positions(full_keys, cache)
        kept = without_masked(model, kept)
        tokens = question_and_decode(model, ids, end, cache, logits, new_tokens, eos)
    return kept, tokens, [scores[layer] for layer in sorted(scores)]


def question_and_decode(model, ids, end: int, cache, logits, new_tokens: int, eos: set[int]) -> list[int]:
    """After a prefill of the first `end` tokens: the rest of the prompt in one forward, then greedy tokens."""
    n_prompt = ids.shape[1]
    if end < n_prompt:
        logits = _forward(model, ids[:, end:], cache, end)
    tokens = []
    for step in range(new_tokens):
        token = int(logits[0].argmax())
        tokens.append(token)
        if token in eos or step == new_tokens - 1:
            break
        logits = _forward(model, torch.tensor([[token]]), cache, n_prompt + step)
    return tokens


def kvpress_seconds(model, press, ids, context_end: int | None, new_tokens: int, eos: set[int],
                    native: bool = False, tokenizer=None) -> float:
    """Wall seconds of kvpress_run's work alone (prefill with the press, question, greedy decoding), nothing
    recorded or compared: what a kvpress user pays per item."""
    from transformers import DynamicCache

    cache = DynamicCache()
    end = ids.shape[1] if context_end is None else context_end
    started = time.perf_counter()
    with torch.no_grad():
        with press_context(press, model, native, tokenizer, cache, ids[:, :end]):
            logits = _forward(model, ids[:, :end], cache, 0)
        question_and_decode(model, ids, end, cache, logits, new_tokens, eos)
    seconds = time.perf_counter() - started
    clear_masks(model)
    return seconds


def replay_arguments(policy, ids, context_end: int | None, tokenizer) -> dict:
    """greedy_generate's context arguments: a policy that reconstructs its context (kvzip) gets the whole prompt
    as its context in the whole-prompt protocol, and its reconstruction prompt."""
    if not getattr(policy, "replays_context", False):
        return {"context_end": context_end}
    from adapters.hf.kvzip import replay_prompt

    return {"context_end": ids.shape[1] if context_end is None else context_end,
            "replay_prompt": replay_prompt(tokenizer)}


def ours_seconds(model, policy, ids, context_end: int | None, new_tokens: int, eos_token_id, tokenizer=None) -> float:
    """Wall seconds of our greedy_generate under `policy` (attach, prefill, update, decoding), nothing recorded."""
    from adapters.hf import greedy_generate

    started = time.perf_counter()
    greedy_generate(model, ids, policy, max_new_tokens=new_tokens, eos_token_id=eos_token_id,
                    **replay_arguments(policy, ids, context_end, tokenizer))
    return time.perf_counter() - started


def timed_pair(model, kvpress, press_name: str, ours_name: str, args, ids, context_end, eos, eos_token_id,
               native: bool, first: str, warm_up: bool, tokenizer=None) -> dict:
    """Median seconds of `args.timing` rounds of each side on one item, the sides alternating (`first` starts);
    `warm_up`: one more round first, not timed (a first call pays one-off costs)."""
    import statistics

    times = {"ours": [], "kvpress": []}
    order = ("ours", "kvpress") if first == "ours" else ("kvpress", "ours")
    warm_up = int(warm_up)
    for _ in range(warm_up + args.timing):
        for side in order:
            if side == "ours":
                policy = make_ours(ours_name, 1 - args.ratio, args.window, args.kernel)
                times["ours"].append(ours_seconds(model, policy, ids, context_end, args.new_tokens, eos_token_id,
                                                  tokenizer))
            else:
                press = make_press(kvpress, press_name, args.ratio, args.window, args.kernel)
                times["kvpress"].append(kvpress_seconds(model, press, ids, context_end, args.new_tokens, eos, native,
                                                        tokenizer))
    times = {side: values[warm_up:] for side, values in times.items()}
    return {"seconds_ours": statistics.median(times["ours"]), "seconds_kvpress": statistics.median(times["kvpress"])}


def without_masked(model, kept: list[list[list[int]]]) -> list[list[list[int]]]:
    """Take out of the kept positions the keys a head-wise press (AdaKVPress) masks instead of removing: kvpress
    stores them in `module.masked_key_indices` (batch, head, slot; batch 1 here, slots = positions before any
    removal) and its attention patch hides them while decoding."""
    language_model = _language_model(model)
    out = []
    for layer, heads in zip(language_model.layers, kept, strict=True):
        masked = getattr(layer.self_attn, "masked_key_indices", None)
        if masked is None:
            out.append(heads)
            continue
        _, head_idx, seq_idx = masked
        hidden = [set() for _ in heads]
        for h, q in zip(head_idx.tolist(), seq_idx.tolist()):
            hidden[h].add(q)
        out.append([[p for p in positions if p not in hidden[h]] for h, positions in enumerate(heads)])
    return out


def clear_masks(model) -> None:
    """No press's mask may outlive its run (kvpress's patch resets it only at a prefill of an empty cache)."""
    language_model = _language_model(model)
    for layer in language_model.layers:
        layer.self_attn.masked_key_indices = None


def full_prefill_keys(model, ids, end: int) -> list[torch.Tensor]:
    from transformers import DynamicCache

    cache = DynamicCache()
    with torch.no_grad():
        _forward(model, ids[:, :end], cache, 0)
    return [layer.keys.clone() for layer in cache.layers]


def ours_run(model, policy, ids, context_end: int | None, new_tokens: int, eos_token_id, tokenizer=None):
    """Our greedy_generate under `policy`; the kept positions are recorded at the policy's one update (the visible
    ones: adakv hides, per head, the slots a rectangular cache holds beyond that head's share)."""
    from adapters.hf import greedy_generate
    from core.memory import HIDDEN

    records: dict[int, list] = {}
    select = policy.select

    def recording(mem):
        positions = mem.observed_positions()
        keep = select(mem)
        kept = positions if keep is None else positions.gather(-1, keep)
        shown = torch.ones_like(kept, dtype=torch.bool)
        if HIDDEN in mem.state:
            hidden = mem.state[HIDDEN]
            shown = ~(hidden if keep is None else hidden.gather(-1, keep))
        records.setdefault(mem.layer_idx, []).append(
            [sorted(p for p, s in zip(h, v) if s) for h, v in zip(kept[0].tolist(), shown[0].tolist())])
        return keep

    policy.select = recording
    gen = greedy_generate(model, ids, policy, max_new_tokens=new_tokens, eos_token_id=eos_token_id,
                          **replay_arguments(policy, ids, context_end, tokenizer))
    if any(len(r) != 1 for r in records.values()):
        raise RuntimeError(f"expected one update per layer, got {[len(r) for r in records.values()]}")
    return [records[layer][0] for layer in sorted(records)], gen.tokens[0]


def summarise(rows: list[dict]) -> dict:
    pairs = sum(r["sets"]["pairs"] for r in rows)
    zones = {side: {z: sum(r["sets"]["differing_positions"][side][z] for r in rows) for z in counts}
             for side, counts in rows[0]["sets"]["differing_positions"].items()}
    per_layer = [sum(col) for col in zip(*(r["sets"]["differing_heads_per_layer"] for r in rows))]
    return {
        "items": len(rows),
        "identical_kept_sets": sum(r["sets"]["identical"] for r in rows) / pairs,
        "mean_jaccard": sum(r["sets"]["jaccard_sum"] for r in rows) / pairs,
        "kvpress_set_within_ours": sum(r["sets"]["theirs_in_ours"] for r in rows) / pairs,
        "answers_equal": sum(r["answer_equal"] for r in rows),
        "ours_correct": sum(r["ours_correct"] for r in rows),
        "kvpress_correct": sum(r["kvpress_correct"] for r in rows),
        "mean_kept_ours": sum(r["kept_ours"] for r in rows) / len(rows),
        "mean_kept_kvpress": sum(r["kept_kvpress"] for r in rows) / len(rows),
        "items_where_counts_differ": sum(r["count_differs"] for r in rows),
        "differing_positions": zones,
        "differing_heads_per_layer": per_layer,
        **timing_summary(rows),
    }


def timing_summary(rows: list[dict]) -> dict:
    """Mean seconds per item of each side and their ratio, where the rows were timed."""
    if not all("seconds_ours" in r for r in rows):
        return {}
    ours = sum(r["seconds_ours"] for r in rows) / len(rows)
    theirs = sum(r["seconds_kvpress"] for r in rows) / len(rows)
    return {"seconds_per_item_ours": ours, "seconds_per_item_kvpress": theirs, "seconds_ratio": ours / theirs}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kvpress_parity")
    parser.add_argument("--kvpress-path", default=os.environ.get("KVPRESS_PATH"),
                        help="folder kvpress was installed into with pip --target (default: $KVPRESS_PATH)")
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratio", type=float, default=0.5, help="kvpress's compression ratio (fraction removed)")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--presses", default=",".join(DEFAULT_PRESSES), help=f"a subset of {', '.join(PRESSES)}")
    parser.add_argument("--plain", action="store_true",
                        help="prompts as plain text, the tokenizer's chat template cleared (needed by kvzip: "
                             "kvpress's KVzip leaves a template's prefix out of its reconstruction, ours does not)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timing", type=int, default=0, metavar="R",
                        help="also time R rounds of each press and our policy per item, alternating, untraced "
                             "(the median per item; kvpress's ratio budget, ours' ceil budget)")
    parser.add_argument("--out", default="bench/results/kvpress_parity.json")
    args = parser.parse_args(argv)
    protocols = args.protocols.split(",")
    if not set(protocols) <= set(PROTOCOLS):
        parser.error(f"--protocols: choose from {', '.join(PROTOCOLS)}")
    presses = args.presses.split(",")
    if not presses or not set(presses) <= set(PRESSES):
        parser.error(f"--presses: choose from {', '.join(PRESSES)}")
    if not 0 < args.ratio < 1:
        parser.error("--ratio must be in (0, 1)")
    if "kvzip" in presses and not args.plain:
        parser.error("--presses kvzip needs --plain: kvpress's KVzip leaves the chat template's prefix out of its "
                     "reconstruction (it scores 0 there) and ours reconstructs it; on plain prompts both repeat "
                     "the whole context")
    torch.set_num_threads(args.threads)
    kvpress = import_kvpress(args.kvpress_path)  # first: see import_kvpress

    import transformers

    from adapters.loading import load_model
    from eval.lm import builtin_tasks
    from adapters.hf import greedy_generate
    from core.policies import Budget, FullCache
    from eval.lm.run import EvalItem, question_token

    model, tok = load_model(args.model)
    if args.plain:
        tok.chat_template = None
    eos = {tok.eos_token_id} if tok.eos_token_id is not None else set()
    items = builtin_tasks.make_items("passkey", args.n, args.length, seed=args.seed, tokenizer=tok)
    native = probe_native_hook(kvpress, model, tok("a short probe " * 10, return_tensors="pt").input_ids)
    print("kvpress's own hook:", "works" if native["works"] else
          f"fails: {native['error']} at {native['file']}:{native['line']}  ({native['source']})")

    configs = [(p, o, False) for p in presses for o in OURS[p]] + [(p, o, True) for p in presses for o in OURS[p]]
    results = {"kvpress_version": getattr(kvpress, "__version__", None) or _dist_version("kvpress"),
               "transformers_version": transformers.__version__, "torch_version": torch.__version__,
               "model": args.model, "task": "passkey", "n": args.n, "length": args.length, "seed": args.seed,
               "compression_ratio": args.ratio, "snapkv_window": args.window, "snapkv_kernel": args.kernel,
               "new_tokens": args.new_tokens, "threads": args.threads, "timing_rounds": args.timing,
               "plain_prompts": args.plain,
               "native_hook": native,
               "driver": "kvpress's hook" if native["works"] else "press.compress run by bench.kvpress_parity's hook",
               "protocols": {}}
    started = time.perf_counter()
    for protocol in protocols:
        per_config: dict[str, list] = {}
        full_rows = []
        for i, item in enumerate(items):
            text = builtin_tasks.render(item, tok, chat=False if args.plain else None)
            ids = tok(text, return_tensors="pt").input_ids
            n_prompt = ids.shape[1]
            context_end = None
            if protocol == "query-agnostic":  # as eval.lm --protocol query-agnostic splits it
                context_end = question_token(tok, EvalItem(str(i), "passkey", text, args.new_tokens,
                                                           builtin_tasks.question_offset(item, text)))
            end = n_prompt if context_end is None else context_end
            full_keys = full_prefill_keys(model, ids, end)
            # harness check: both decoding paths without compression
            _, hf_tokens, _ = kvpress_run(model, None, ids, context_end, args.new_tokens, eos, full_keys)
            ours_full = greedy_generate(model, ids, FullCache(), max_new_tokens=args.new_tokens,
                                        eos_token_id=tok.eos_token_id, context_end=context_end).tokens[0]
            full_rows.append(hf_tokens == ours_full)
            press_cache = {}
            for press_name, ours_name, kv_count in configs:
                if press_name not in press_cache:
                    press = make_press(kvpress, press_name, args.ratio, args.window, args.kernel)
                    press_cache[press_name] = kvpress_run(model, press, ids, context_end, args.new_tokens, eos,
                                                          full_keys, native["works"], tok)
                    clear_masks(model)
                kv_kept, kv_tokens, kv_scores = press_cache[press_name]
                count_differs = kvpress_count(end, args.ratio) != Budget(1 - args.ratio).tokens(end)
                key = f"{ours_name}@kvpress_count" if kv_count else ours_name
                if kv_count and not count_differs:  # the same run as the plain row
                    per_config.setdefault(key, []).append(per_config[ours_name][-1])
                    continue
                budget = kvpress_count(end, args.ratio) if kv_count else 1 - args.ratio
                policy = make_ours(ours_name, budget, args.window, args.kernel)
                our_kept, our_tokens = ours_run(model, policy, ids, context_end, args.new_tokens, tok.eos_token_id,
                                                tok)
                our_text = tok.decode(our_tokens, skip_special_tokens=True)
                kv_text = tok.decode(kv_tokens, skip_special_tokens=True)
                per_config.setdefault(key, []).append({
                    "item": i, "press": press_name, "prompt_tokens": n_prompt, "compressed_tokens": end,
                    "count_differs": count_differs,
                    # per KV head of the first layer, mean (heads keep different counts under adakv)
                    "kept_ours": sum(map(len, our_kept[0])) / len(our_kept[0]),
                    "kept_kvpress": sum(map(len, kv_kept[0])) / len(kv_kept[0]),
                    "sets": compare_sets(our_kept, kv_kept, end, args.window, args.kernel, kv_scores),
                    "answer_ours": our_text, "answer_kvpress": kv_text, "answer_equal": our_tokens == kv_tokens,
                    "ours_correct": builtin_tasks.score_item(item, our_text),
                    "kvpress_correct": builtin_tasks.score_item(item, kv_text),
                    **(timed_pair(model, kvpress, press_name, ours_name, args, ids, context_end, eos,
                                  tok.eos_token_id, native["works"], first=("ours", "kvpress")[i % 2], warm_up=i == 0,
                                  tokenizer=tok)
                       if args.timing and not kv_count else {})})
            print(f"[{protocol}] item {i + 1}/{len(items)} ({n_prompt} tokens, compressed {end}) "
                  f"{time.perf_counter() - started:.0f}s", flush=True)
        results["protocols"][protocol] = {
            "full_answers_equal": sum(full_rows),
            "configs": {key: {"press": rows[0]["press"], **summarise(rows), "items": rows}
                        for key, rows in per_config.items()}}
    results["seconds"] = time.perf_counter() - started
    write_json_atomic(args.out, results)
    print_table(results)
    print(f"wrote {args.out}")
    return 0


def _dist_version(name: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def print_table(results: dict) -> None:
    print(f"\nkvpress {results['kvpress_version']} vs ours, {results['model']} passkey n={results['n']} "
          f"length {results['length']}, compression ratio {results['compression_ratio']} ({results['driver']})")
    header = f"{'protocol':<15} {'press':<13} {'ours':<26} {'identical':>9} {'jaccard':>8} {'kv<=ours':>8} " \
             f"{'kept o/kv':>11} {'answers=':>8} {'correct o/kv':>12} {'s/item o/kv':>13} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for protocol, block in results["protocols"].items():
        n = results["n"]
        print(f"{protocol:<15} {'(none)':<13} {'full':<26} {'':>9} {'':>8} {'':>8} {'':>11} "
              f"{block['full_answers_equal']:>3}/{n:<4} {'':>12}")
        for key, s in block["configs"].items():
            press = PRESS_LABELS[s["press"]]
            print(f"{protocol:<15} {press:<13} {key:<26} {s['identical_kept_sets']:>8.1%} {s['mean_jaccard']:>8.3f} "
                  f"{s['kvpress_set_within_ours']:>7.1%} {s['mean_kept_ours']:>5.1f}/{s['mean_kept_kvpress']:<5.1f} "
                  f"{s['answers_equal']:>3}/{n:<4} {s['ours_correct']:>5.0f}/{s['kvpress_correct']:<6.0f}"
                  + (f" {s['seconds_per_item_ours']:>6.2f}/{s['seconds_per_item_kvpress']:<6.2f} "
                     f"{s['seconds_ratio']:>5.2f}x" if "seconds_ratio" in s else ""))


if __name__ == "__main__":
    from core.errors import cli_main

    raise SystemExit(cli_main(main))  # a project error: one line, status 2; Ctrl-C: one line, status 130
