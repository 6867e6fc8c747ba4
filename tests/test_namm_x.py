"""NAMM-X: fixed-budget top-k selection, and every baseline as a point of its search space.

A NAMM-X whose readout is set to a baseline's rule (`core.namm_x.baseline_readout`), in that baseline's
head mode and at the same budget, must make exactly the baseline's eviction decisions at every update of
every layer (torch.equal on the kept indices), on a tiny Llama and on real SmolLM2 prompts."""
import pytest
import torch

from adapters.hf import attach, greedy_generate
from core.memory import LayerMemory
from core.namm import NAMM, NAMMConfig
from core.namm_x import BASELINE_HEAD_MODES, BASELINE_READOUTS, baseline_readout, rank01
from core.policies import Schedule
from core.registry import make_policy
from tests.test_adapter_llama import assert_like_unmodified, tiny_llama


def Recorder(policy):
    """`policy`, recording in `policy.decisions` every update's kept indices (None: nothing evicted)."""
    select, policy.decisions = policy.select, []

    def recorded(mem):
        keep = select(mem)
        policy.decisions.append((mem.layer_idx, mem.processed, None if keep is None else keep.clone()))
        return keep

    policy.select = recorded
    return policy


def namm_x(baseline: str, budget: float, schedule: Schedule, hidden: int = 0) -> NAMM:
    config = NAMMConfig(features="namm_x", selection="topk", budget=budget, head_mode=BASELINE_HEAD_MODES[baseline],
                        readout_hidden=hidden)
    namm = NAMM(config, baseline_readout(config.feature_names, hidden, baseline))
    namm.use_schedule(schedule)
    return namm


def decisions(model, ids, policy, new_tokens=6, prefill_chunk=512, **options):
    recorder = Recorder(policy)
    greedy_generate(model, ids, recorder, max_new_tokens=new_tokens, prefill_chunk=prefill_chunk, **options)
    return recorder.decisions


def assert_same_decisions(ours, theirs):
    assert len(ours) == len(theirs) and len(ours) > 0
    evictions = 0
    for (layer_a, seen_a, keep_a), (layer_b, seen_b, keep_b) in zip(ours, theirs):
        assert (layer_a, seen_a) == (layer_b, seen_b)
        assert (keep_a is None) == (keep_b is None), f"layer {layer_a} at {seen_a}: one evicts, the other not"
        if keep_a is not None:
            assert torch.equal(keep_a, keep_b), f"layer {layer_a} at {seen_a} tokens: kept sets differ"
            evictions += 1
    assert evictions > 0, "nothing was evicted: the comparison would prove nothing"


@pytest.mark.parametrize("baseline", BASELINE_READOUTS)
@pytest.mark.parametrize("budget", [0.5, 0.25])
def test_a_baseline_readout_keeps_exactly_what_the_baseline_keeps_on_a_tiny_llama(baseline, budget, one_thread):
    model = tiny_llama(seed=1)
    ids = torch.randint(0, 128, (1, 700), generator=torch.Generator().manual_seed(7))
    schedule = Schedule(160, True)
    theirs = decisions(model, ids, make_policy(baseline, budget=budget, schedule=schedule), prefill_chunk=100)
    ours = decisions(model, ids, namm_x(baseline, budget, schedule), prefill_chunk=100)
    assert_same_decisions(ours, theirs)


def test_a_hidden_layer_starting_at_zero_changes_nothing(one_thread):
    model = tiny_llama(seed=2)
    ids = torch.randint(0, 128, (1, 500), generator=torch.Generator().manual_seed(3))
    schedule = Schedule(128, True)
    linear = decisions(model, ids, namm_x("h2o", 0.5, schedule))
    hidden = namm_x("h2o", 0.5, schedule, hidden=8)
    assert hidden.n_params == 26 + 8 * 27  # 25 features: w and b, then W (25 x 8), c and v
    assert_same_decisions(decisions(model, ids, hidden), linear)


def test_topk_keeps_exactly_ceil_budget_tokens_in_every_layer_and_head(one_thread):
    model = tiny_llama(seed=3, layers=2)
    ids = torch.randint(0, 128, (1, 333), generator=torch.Generator().manual_seed(5))
    config = NAMMConfig(features="namm_x", selection="topk", budget=0.3, head_mode="per_head", n_up=100,
                        update_at_prompt_end=True)
    params = torch.randn(config.n_params, generator=torch.Generator().manual_seed(0))
    recorder = Recorder(NAMM(config, params))
    greedy_generate(model, ids, recorder, max_new_tokens=1, prefill_chunk=64)
    updates = [(seen, keep) for _, seen, keep in recorder.decisions]
    assert {seen for seen, _ in updates} == {100, 200, 300, 333}
    for seen, keep in updates:
        assert keep is not None and keep.shape == (1, 2, -(-3 * seen // 10))
        heads_differ = not torch.equal(keep[0, 0], keep[0, 1])
    assert heads_differ, "per_head mode with random weights should let heads keep different tokens"


def test_shared_head_mode_keeps_one_set_for_every_head(one_thread):
    model = tiny_llama(seed=4, layers=2)
    ids = torch.randint(0, 128, (1, 300), generator=torch.Generator().manual_seed(1))
    config = NAMMConfig(features="namm_x", selection="topk", budget=0.4, head_mode="shared", n_up=100)
    params = torch.randn(config.n_params, generator=torch.Generator().manual_seed(1))
    recorder = Recorder(NAMM(config, params))
    greedy_generate(model, ids, recorder, max_new_tokens=1)
    kept = [keep for _, _, keep in recorder.decisions if keep is not None]
    assert kept and all(torch.equal(k[0, 0], k[0, 1]) for k in kept)


@pytest.mark.parametrize("exact", [True, False])
def test_budget_one_is_the_full_cache(exact, one_thread):
    """Bit for bit on the exact path; within rounding, the same tokens, on the default path."""
    model = tiny_llama(seed=5)
    ids = torch.randint(0, 128, (1, 400), generator=torch.Generator().manual_seed(2))
    config = NAMMConfig(features="namm_x", selection="topk", budget=1.0, n_up=64, update_at_prompt_end=True)
    namm = NAMM(config, torch.randn(config.n_params, generator=torch.Generator().manual_seed(2)))
    ref = model.generate(ids, max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)
    with attach(model, namm, exact=exact) as session:
        out = model.generate(ids, max_new_tokens=5, do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert session.n_updates > 0
    assert session.cache.fraction() == 1.0
    assert torch.equal(out.sequences, ref.sequences)
    assert_like_unmodified(out.logits, ref.logits, exact)


def test_the_paper_scorer_under_topk_obeys_the_budget(one_thread):
    model = tiny_llama(seed=6, layers=2)
    ids = torch.randint(0, 128, (1, 260), generator=torch.Generator().manual_seed(4))
    config = NAMMConfig(selection="topk", budget=0.5, n_up=128, update_at_prompt_end=True)
    namm = NAMM(config, 0.1 * torch.randn(config.n_params, generator=torch.Generator().manual_seed(3)))
    gen = greedy_generate(model, ids, namm, max_new_tokens=1)
    assert gen.kept_tokens == [130, 130] or gen.kept_tokens == [131, 131]  # 130 at the prompt end, + the new token


def test_rank01_orders_like_the_values_and_spans_zero_to_one():
    x = torch.tensor([[3.0, -1.0, 2.5, 10.0, 0.0]])
    r = rank01(x)
    assert torch.equal(r.argsort(), x.argsort())
    assert r.min() == 0.0 and r.max() == 1.0


def test_a_namm_x_checkpoint_round_trips_and_refuses_bad_fields(tmp_path):
    from core.errors import UserError

    config = NAMMConfig(features="namm_x", selection="topk", budget=0.25, head_mode="shared", readout_hidden=4)
    namm = NAMM(config, torch.randn(config.n_params, generator=torch.Generator().manual_seed(0)))
    namm.save_pretrained(tmp_path / "x")
    back = NAMM.from_pretrained(tmp_path / "x")
    assert back.config == config and torch.equal(back.params, namm.params)
    import json

    data = json.loads((tmp_path / "x" / "config.json").read_text())
    for field, value in (("selection", "top"), ("budget", 1.5), ("head_mode", "each")):
        bad = dict(data, **{field: value})
        (tmp_path / "x" / "config.json").write_text(json.dumps(bad))
        with pytest.raises(UserError, match=field):
            NAMM.from_pretrained(tmp_path / "x")


def test_set_budget_is_refused_for_a_threshold_namm():
    with pytest.raises(ValueError, match="topk"):
        NAMM.zeros().set_budget(0.5)


def test_the_flushed_spectrogram_sees_the_newest_rows():
    """The paper's EMA lags: the rows still buffered reach no feature. NAMM-X folds them in at the
    update, so a token attended only by the newest rows has non-zero spectrogram features."""
    config = NAMMConfig(features="namm_x", selection="topk", budget=0.5)
    namm = NAMM(config)
    mem = LayerMemory()
    keys = torch.randn(1, 1, 40, 4)
    mem.append(keys, keys)
    mem.advance(40)
    probs = torch.zeros(1, 1, 40, 40)
    probs[0, 0, :, 0] = 1.0
    probs[0, 0, -6:, 0] = 0.0
    probs[0, 0, -6:, 30] = 1.0  # only the newest 6 rows (still buffered: 16 + 40 samples fill 2 frames) attend to it
    namm.observe(mem, probs, rows_left=0)
    raw = namm.namm_x.raw(mem, 20)
    assert float(mem.state["spec_ema"][0, 0, 30].abs().sum()) == 0.0  # the stored EMA has not seen it
    assert float(raw["spec"][0, 0, 30].abs().sum()) > 0.0


@pytest.mark.slow
@pytest.mark.parametrize("baseline", BASELINE_READOUTS)
def test_a_baseline_readout_keeps_exactly_what_the_baseline_keeps_on_smollm2(smollm2, baseline):
    from eval.lm.builtin_tasks import make_items, render

    model, tokenizer = smollm2
    schedule = Schedule(256, True)
    item = make_items("phonebook", 1, 600, seed=12, tokenizer=tokenizer)[0]
    ids = tokenizer(render(item, tokenizer), return_tensors="pt").input_ids
    for budget in (0.5, 0.25):
        theirs = decisions(model, ids, make_policy(baseline, budget=budget, schedule=schedule), new_tokens=2)
        ours = decisions(model, ids, namm_x(baseline, budget, schedule), new_tokens=2)
        assert_same_decisions(ours, theirs)
