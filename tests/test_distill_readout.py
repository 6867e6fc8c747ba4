"""The oracle readout fit (`evolve.distill --teacher oracle`): the target is the attention the gold answer pays
to each token under the full cache, the readout its least-squares fit on the NAMM-X features."""
import math
from types import SimpleNamespace

import pytest
import torch

from core.namm import NAMM, NAMMConfig
from core.namm_x import baseline_readout, rank01
from evolve.distill_readout import distill_linear_readout, fit_linear, record_prompt, recall_table, top_recall
from tests.test_adapter_llama import tiny_llama

N_UP = 32


def namm_x(n_up=N_UP):
    config = NAMMConfig(n_up=n_up, update_at_prompt_end=True, features="namm_x", selection="topk", budget=0.5,
                        head_mode="shared")
    return NAMM(config)


def eager_attention(model, ids):
    """Per layer [heads, L, L]: the unmodified model's attention probabilities."""
    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_attentions=True, use_cache=False)
    finally:
        model.config._attn_implementation = previous
    return [a[0] for a in out.attentions]


def test_the_oracle_is_the_answers_attention_and_features_are_recorded_at_every_update(one_thread):
    model = tiny_llama()
    g = torch.Generator().manual_seed(3)
    ids, answer = torch.randint(0, 128, (1, 3 * N_UP + 5), generator=g), torch.randint(0, 128, (4,), generator=g)
    prompt = SimpleNamespace(ids=ids, answer_ids=answer)
    pairs = record_prompt(model, prompt, namm_x())
    assert len(pairs) == 3 * 4  # 3 layers x (3 updates every 32 tokens + the prompt's end)
    n = ids.shape[1]
    assert [f.shape[0] for f, _ in pairs] == [N_UP, 2 * N_UP, 3 * N_UP, n] * 3  # layer by layer in one forward
    full = torch.cat([ids, answer[:-1].unsqueeze(0)], dim=1)
    for layer, probs in enumerate(eager_attention(model, full)):
        expected = probs[:, n:, :n].sum(dim=1).mean(dim=0)  # answer rows, summed; heads averaged
        torch.testing.assert_close(pairs[4 * layer + 3][1], rank01(expected), atol=0, rtol=0)


def test_the_fit_recovers_a_target_that_is_one_feature(one_thread):
    names = namm_x().config.feature_names
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(6):
        feats = rank01(torch.rand(len(names), 80, generator=g)).T.contiguous()
        pairs.append((feats, feats[:, names.index("l2")].clone()))
    flat = fit_linear(pairs)
    assert flat[names.index("l2")] == pytest.approx(1.0, abs=0.01)
    recall = recall_table({"fitted": flat, "l2": baseline_readout(names, 0, "l2"),
                           "tova": baseline_readout(names, 0, "tova")}, pairs, names, 0, (0.5,))
    assert recall["fitted"]["0.5"] == recall["l2"]["0.5"] == 1.0 > recall["tova"]["0.5"]


def test_top_recall_counts_the_shared_top_tokens_with_the_newest_kept():
    target = torch.tensor([0.9, 0.8, 0.1, 0.0, 0.2])
    assert top_recall(target, target, 0.4) == 1.0
    assert top_recall(torch.tensor([0.0, 0.9, 0.8, 0.7, 0.0]), target, 0.4) == 0.5  # {1, 4} against {0, 4}
    assert top_recall(target, target, 1.0) == 1.0


def test_distill_linear_readout_sets_the_fitted_readout_and_reports_held_out_recall(one_thread):
    model = tiny_llama()
    g = torch.Generator().manual_seed(5)
    prompts = [SimpleNamespace(ids=torch.randint(0, 128, (1, 2 * N_UP + 7), generator=g),
                               answer_ids=torch.randint(0, 128, (3,), generator=g)) for _ in range(5)]
    student = namm_x()
    report = distill_linear_readout(model, prompts, student, progress=False)
    assert report["heldout_prompts"] == 1 and report["records"] == 5 * 3 * 3  # 5 prompts x 3 layers x 3 updates
    torch.testing.assert_close(student.params[:26], torch.tensor(list(report["weights"].values())), atol=5e-5, rtol=0)
    assert student.params.abs().sum() > 0
    assert set(report["recall_heldout"]) == {"fitted", "tova", "h2o", "snapkv", "l2", "recency"}
    assert all(0 <= v <= 1 for r in report["recall_heldout"].values() for v in r.values())
    assert math.isfinite(float(student.params.sum()))


def spy_on_updates(policy, read):
    """Make `policy` keep everything and record `read(mem)` at each of its updates instead."""
    seen = []
    policy.select = lambda mem: seen.append(read(mem))  # returns None: nothing evicted
    return seen


def test_the_kvzip_target_is_kvzips_own_score_and_the_features_are_the_students_at_the_contexts_end(one_thread):
    from adapters.hf import greedy_generate
    from adapters.hf.kvzip import ReplayPrompt
    from core.policies.kvzip import KVzip
    from evolve.distill_readout import record_prompt_kvzip

    model = tiny_llama()
    replay = ReplayPrompt(first=torch.tensor([[5, 6, 7]]), later=torch.tensor([[8, 9]]), suffix=torch.tensor([[10]]))
    ids = torch.randint(0, 128, (1, 3 * N_UP + 5), generator=torch.Generator().manual_seed(7))
    n = ids.shape[1]
    pairs = record_prompt_kvzip(model, SimpleNamespace(ids=ids), namm_x(), replay)
    assert [f.shape[0] for f, _ in pairs] == [n] * 3  # one record per layer, at the context's end

    policy = KVzip(0.5, n_up=n + 1, update_at_prompt_end=True)
    seen = spy_on_updates(policy, lambda mem: policy.scores(mem)[0].mean(dim=0).clone())
    greedy_generate(model, ids, policy, max_new_tokens=1, context_end=n, replay_prompt=replay)
    assert len(seen) == 3
    for (_, target), scores in zip(pairs, seen):
        torch.testing.assert_close(target, rank01(scores), atol=0, rtol=0)
        assert target[:4].min() == rank01(scores).max()  # the sinks score KVzip's 1, the highest

    student = namm_x(n_up=n + 1)
    seen = spy_on_updates(student, lambda mem: student.features(mem)[0, 0].float().clone())
    greedy_generate(model, ids, student, max_new_tokens=1, context_end=n, replay_prompt=None)
    assert len(seen) == 3
    for (feats, _), expected in zip(pairs, seen):
        torch.testing.assert_close(feats, expected, atol=0, rtol=0)


def test_a_kvzip_fit_reports_recall_of_kvzips_choice(one_thread):
    from adapters.hf.kvzip import ReplayPrompt

    model = tiny_llama()
    replay = ReplayPrompt(first=torch.tensor([[5, 6, 7]]), later=torch.tensor([[8, 9]]), suffix=torch.tensor([[10]]))
    g = torch.Generator().manual_seed(5)
    prompts = [SimpleNamespace(ids=torch.randint(0, 128, (1, 2 * N_UP + 7), generator=g)) for _ in range(5)]
    student = namm_x()
    report = distill_linear_readout(model, prompts, student, progress=False, replay_prompt=replay)
    assert report["heldout_prompts"] == 1 and report["records"] == 5 * 3  # one update per prompt and layer
    torch.testing.assert_close(student.params[:26], torch.tensor(list(report["weights"].values())), atol=5e-5, rtol=0)
    assert all(0 <= v <= 1 for r in report["recall_heldout"].values() for v in r.values())
