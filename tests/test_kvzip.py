"""kvzip: each context token's score is the largest attention it receives from the reconstruction queries, equal
to the same attention read off an unmodified full forward (masked as KVzip scores it); it runs only where a
whole context is compressed at once."""
import math

import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from adapters.hf import greedy_generate
from adapters.hf.kvzip import ReplayPrompt, chunk_inputs
from core.policies import KVzip
from core.registry import make_policy
from tests.test_adapter_llama import tiny_llama

PROMPT = ReplayPrompt(first=torch.tensor([[5, 6, 7]]), later=torch.tensor([[8, 9]]), suffix=torch.tensor([[10]]))


def recorded_attention_inputs(model, ids):
    """Per layer, the queries and keys (after RoPE) of an unmodified forward over `ids`."""
    seen = {}

    def record(module, query, key, value, attention_mask, **kwargs):
        seen[module.layer_idx] = (query.detach().clone(), key.detach().clone())
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register("kvzip_test_record", record)
    previous = model.config._attn_implementation
    model.config._attn_implementation = "kvzip_test_record"
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        model.config._attn_implementation = previous
    return seen


def reference_scores(model, context, chunk_size, n_sink=4, postfix=8):
    """KVzip's scores from full forwards over context + each reconstruction chunk, scored as the authors do:
    softmax over the sinks, the chunk's context tokens and the reconstruction tokens (causal among them), max
    over the reconstruction rows and the query heads of each KV head. Sinks score 1."""
    n = context.shape[1]
    scores = {}
    for start, end, replay in chunk_inputs(context, PROMPT, chunk_size, postfix):
        full = torch.cat([context, replay], dim=1)
        for layer, (query, key) in recorded_attention_inputs(model, full).items():
            q = query[:, :, n:]
            hq, hkv, d = q.shape[1], key.shape[1], q.shape[-1]
            sink = min(n_sink, start)
            columns = list(range(sink)) + list(range(start, end)) + list(range(n, full.shape[1]))
            sub = key[:, :, columns].repeat_interleave(hq // hkv, dim=1)
            logits = q @ sub.transpose(-1, -2) / math.sqrt(d)
            r = q.shape[2]
            causal = torch.ones(r, r, dtype=torch.bool).triu(1)
            logits[..., -r:] = logits[..., -r:].masked_fill(causal, float("-inf"))
            probs = torch.softmax(logits, dim=-1)[..., sink : sink + end - start]
            best = probs.view(1, hkv, hq // hkv, r, -1).amax(dim=(2, 3))
            table = scores.setdefault(layer, torch.zeros(1, hkv, n))
            table[..., start:end] = torch.maximum(table[..., start:end], best)
    for table in scores.values():
        table[..., :n_sink] = 1.0
    return scores


@pytest.mark.parametrize("chunk_size", [64, 16])
def test_scores_equal_a_full_forwards_reconstruction_attention(chunk_size, one_thread):
    model = tiny_llama()
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(11, 128, (1, 50), generator=g)
    context_end = 40
    policy = KVzip(0.5, chunk_size=chunk_size, n_up=10**6)
    got = {}
    score = policy.scores

    def recording(mem):
        got[mem.layer_idx] = score(mem).clone()
        return got[mem.layer_idx]

    policy.scores = recording
    gen = greedy_generate(model, ids, policy, max_new_tokens=2, context_end=context_end, replay_prompt=PROMPT)
    ref = reference_scores(model, ids[:, :context_end], chunk_size)
    assert sorted(got) == sorted(ref) == [0, 1, 2]
    for layer in ref:
        torch.testing.assert_close(got[layer], ref[layer], rtol=1e-5, atol=1e-6)
    assert gen.kept_tokens == [math.ceil(0.5 * context_end) + 10 + 1] * 3
    assert gen.replay_seconds > 0


def test_the_reconstruction_leaves_the_rest_of_the_run_unchanged(one_thread):
    """After the reconstruction the cache holds only the context: with a budget of 1.0 kvzip changes nothing."""
    model = tiny_llama()
    ids = torch.randint(11, 128, (1, 60), generator=torch.Generator().manual_seed(8))
    full = greedy_generate(model, ids, make_policy("full"), max_new_tokens=6, context_end=45, return_logits=True)
    zipped = greedy_generate(model, ids, KVzip(1.0, n_up=10**6), max_new_tokens=6, context_end=45,
                             replay_prompt=PROMPT, return_logits=True)
    assert zipped.tokens == full.tokens
    assert all(torch.equal(a, b) for a, b in zip(zipped.logits, full.logits))


def test_kvzip_refuses_to_run_where_no_whole_context_is_compressed(one_thread):
    model = tiny_llama()
    ids = torch.randint(11, 128, (1, 60), generator=torch.Generator().manual_seed(9))
    with pytest.raises(ValueError, match="context_end"):
        greedy_generate(model, ids, KVzip(0.5), max_new_tokens=2)
    with pytest.raises(RuntimeError, match="whole context"):  # an update every 16 tokens falls inside the context
        greedy_generate(model, ids, KVzip(0.5, n_up=16), max_new_tokens=2, context_end=45, replay_prompt=PROMPT)


def test_adakv_kvzip_spreads_the_reconstruction_scores_over_heads(one_thread):
    model = tiny_llama()
    ids = torch.randint(11, 128, (1, 60), generator=torch.Generator().manual_seed(10))
    gen = greedy_generate(model, ids, make_policy("adakv(kvzip)", 0.3, n_up=10**6), max_new_tokens=1,
                          context_end=50, replay_prompt=PROMPT)
    assert min(gen.kept_tokens) >= math.ceil(0.3 * 50) + 10


def test_the_clis_say_where_kvzip_cannot_run(tmp_path, fake_lm, monkeypatch, capsys):
    import eval.lm.run as run
    from eval.lm.__main__ import main as lm_main
    from eval.rl.__main__ import main as rl_main

    out = str(tmp_path / "run")
    assert lm_main(["--tasks", "passkey", "--policies", "full,kvzip", "--out-dir", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "kvzip" in err and "query-agnostic" in err
    # the stub tokenizer has no offsets: four characters a token, as it counts
    monkeypatch.setattr(run, "question_token", lambda tokenizer, item: item.question_char // 4)
    assert lm_main(["--tasks", "passkey", "--policies", "kvzip", "--protocol", "query-agnostic", "--length", "600",
                    "--n", "1", "--out-dir", out]) == 2  # the default n_up 512 updates inside the context
    assert "--n-up" in capsys.readouterr().err
    assert rl_main(["--env", "hopper", "--policies", "window,kvzip", "--episodes", "1"]) == 2
    assert "step by step" in capsys.readouterr().err
    calls = []
    stub = run.greedy_generate

    def recording(model, ids, policy, **kwargs):
        calls.append((policy.name, kwargs.get("replay_prompt")))
        return stub(model, ids, policy, **kwargs)

    monkeypatch.setattr(run, "greedy_generate", recording)
    assert lm_main(["--tasks", "passkey", "--policies", "full,kvzip,adakv(kvzip)", "--protocol", "query-agnostic",
                    "--length", "600", "--n", "1", "--n-up", "100000", "--budget", "0.5", "--out-dir", out]) == 0
    assert [name for name, _ in calls] == ["full", "kvzip", "adakv(kvzip)"]
    assert calls[0][1] is None and calls[1][1] is not None and calls[2][1] is not None
    import json
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert "replay_seconds_per_item" in results["policies"]["kvzip"]["passkey"]


def test_the_table_reports_the_reconstruction_cost():
    from eval.lm.run import add_normalised, format_table

    cell = lambda score, **extra: {"score": score, "cache_fraction": 0.5, "seconds_per_item": 2.0, **extra}  # noqa: E731
    results = {"tasks": ["passkey"], "policies": {"full": {"passkey": cell(100.0)},
                                                 "adakv(snapkv)": {"passkey": cell(50.0)},
                                                 "kvzip": {"passkey": cell(80.0, replay_seconds_per_item=0.5)}}}
    add_normalised(results, {"passkey": 0.0})
    table = format_table(results)
    assert "kvzip: its context reconstruction took 0.50 s/item (of 2.00 s/item in all)" in table
    assert "adakv(snapkv) " in table and "adakv(snapkv):" not in table


def test_a_context_given_as_embeddings_is_reconstructed_as_its_ids(one_thread):
    """A video prompt reaches kvzip as input embeddings: the same scores, kept tokens and logits as its ids."""
    model = tiny_llama()
    ids = torch.randint(11, 128, (1, 60), generator=torch.Generator().manual_seed(11))
    by_ids = greedy_generate(model, ids, KVzip(0.5, chunk_size=16, n_up=10**6), max_new_tokens=4, context_end=45,
                             replay_prompt=PROMPT, return_logits=True)
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    by_embeds = greedy_generate(model, None, KVzip(0.5, chunk_size=16, n_up=10**6), max_new_tokens=4,
                                context_end=45, replay_prompt=PROMPT, return_logits=True, inputs_embeds=embeds)
    assert by_embeds.tokens == by_ids.tokens and by_embeds.kept_tokens == by_ids.kept_tokens
    assert all(torch.equal(a, b) for a, b in zip(by_embeds.logits, by_ids.logits))


def test_the_whole_prompt_as_the_context_is_one_compression_at_its_end(one_thread):
    model = tiny_llama()
    ids = torch.randint(11, 128, (1, 50), generator=torch.Generator().manual_seed(12))
    full = greedy_generate(model, ids, make_policy("full"), max_new_tokens=5, return_logits=True)
    kept_all = greedy_generate(model, ids, KVzip(1.0, n_up=10**6), max_new_tokens=5, context_end=50,
                               replay_prompt=PROMPT, return_logits=True)
    assert kept_all.tokens == full.tokens
    assert all(torch.equal(a, b) for a, b in zip(kept_all.logits, full.logits))
    half = greedy_generate(model, ids, KVzip(0.5, n_up=10**6), max_new_tokens=5, context_end=50, replay_prompt=PROMPT)
    assert half.kept_tokens == [math.ceil(0.5 * 50) + 4] * 3  # the reply's fed tokens are kept as they come
    assert half.fraction_at_update == math.ceil(0.5 * 50) / 50
