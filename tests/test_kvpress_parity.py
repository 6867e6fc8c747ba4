"""The bookkeeping of bench.kvpress_parity that needs neither kvpress nor a model: reading kept positions back
from a compressed cache, comparing kept sets, and kvpress's count of kept tokens."""
from types import SimpleNamespace

import pytest
import torch

from bench.kvpress_parity import compare_sets, kept_positions, kvpress_count, timing_summary, zone


def _cache(*layers):
    return SimpleNamespace(layers=[SimpleNamespace(keys=k) for k in layers])


def test_kept_positions_reads_back_score_ordered_rows():
    full = torch.randn(1, 2, 6, 4)
    # kvpress keeps rows in score order, not position order
    kept = torch.stack([full[0, 0, [4, 1, 5]], full[0, 1, [0, 3, 2]]]).unsqueeze(0)
    assert kept_positions([full], _cache(kept)) == [[[1, 4, 5], [0, 2, 3]]]


def test_kept_positions_refuses_identical_rows():
    full = torch.randn(1, 1, 4, 3)
    full[0, 0, 2] = full[0, 0, 1]
    with pytest.raises(ValueError, match="identical keys"):
        kept_positions([full], _cache(full[:, :, :2]))


def test_compare_sets_counts_identical_jaccard_and_zones():
    ours = [[[0, 1, 9], [2, 3, 9]]]
    theirs = [[[0, 1, 9], [2, 3, 4]]]
    scores = [torch.tensor([[[9.0, 8, 0, 0, 0, 0, 0, 0, 0, 7], [0, 0, 9, 8, 7, 1, 1, 1, 1, 6]]])]
    out = compare_sets(ours, theirs, n=10, window=2, kernel=3, kv_scores=scores)
    assert out["pairs"] == 2 and out["identical"] == 1
    assert out["jaccard_sum"] == pytest.approx(1 + 2 / 4)
    assert out["theirs_in_ours"] == 1
    assert out["differing_positions"]["only_ours"]["newest"] == 1
    assert out["differing_positions"]["only_kvpress"]["other"] == 1
    assert out["differing_heads_per_layer"] == [1]


def test_zone_edges_and_ties():
    assert zone(9, 10, 2, 7, False) == "newest"
    assert zone(2, 10, 2, 7, False) == "first_half_kernel"
    assert zone(5, 10, 2, 7, False) == "half_kernel_before_window"
    assert zone(4, 20, 2, 7, True) == "tie_at_kvpress_cutoff"
    assert zone(4, 20, 2, 7, False) == "other"


def test_kvpress_count_rounds_down():
    assert kvpress_count(501, 0.5) == 250  # ours: ceil -> 251
    assert kvpress_count(500, 0.5) == 250
    assert kvpress_count(1, 0.9) == 1


def test_without_masked_takes_out_what_a_headwise_press_masks():
    from types import SimpleNamespace

    from bench.kvpress_parity import clear_masks, without_masked

    masked = (torch.tensor([0, 0, 0]), torch.tensor([0, 1, 1]), torch.tensor([2, 0, 3]))
    layers = [SimpleNamespace(self_attn=SimpleNamespace(masked_key_indices=masked)),
              SimpleNamespace(self_attn=SimpleNamespace(masked_key_indices=None))]
    model = SimpleNamespace(model=SimpleNamespace(layers=layers))
    kept = [[[0, 1, 2, 3], [0, 1, 2, 3]], [[0, 1], [2, 3]]]
    assert without_masked(model, kept) == [[[0, 1, 3], [1, 2]], [[0, 1], [2, 3]]]
    clear_masks(model)
    assert all(layer.self_attn.masked_key_indices is None for layer in layers)


def test_timing_summary_is_the_ratio_of_mean_seconds_and_absent_when_untimed():
    rows = [{"seconds_ours": 1.0, "seconds_kvpress": 2.0}, {"seconds_ours": 3.0, "seconds_kvpress": 2.0}]
    assert timing_summary(rows) == {"seconds_per_item_ours": 2.0, "seconds_per_item_kvpress": 2.0,
                                    "seconds_ratio": 1.0}
    assert timing_summary([{"item": 0}]) == {}


def test_kvzip_needs_plain_prompts_and_is_refused_before_kvpress_loads(capsys):
    from bench.kvpress_parity import main

    with pytest.raises(SystemExit) as stop:
        main(["--presses", "kvzip", "--kvpress-path", "/nonexistent"])
    assert stop.value.code == 2
    assert "--presses kvzip needs --plain" in capsys.readouterr().err


def test_replay_arguments_give_kvzip_the_whole_prompt_as_context():
    from bench.kvpress_parity import make_ours, replay_arguments
    from core.policies import AdaKV

    ids = torch.zeros(1, 40, dtype=torch.long)
    assert replay_arguments(make_ours("snapkv", 0.5, 32, 7), ids, None, None) == {"context_end": None}
    ours = make_ours("adakv(kvzip)", 0.5, 32, 7)
    assert isinstance(ours, AdaKV) and ours.alpha_safeguard == 0.0  # KVzipPress has no per-head safeguard

    class Tokenizer:  # what replay_prompt reads
        chat_template = None

        def __call__(self, text, add_special_tokens=False):
            return type("Encoded", (), {"input_ids": [ord(c) for c in text]})()

    whole = replay_arguments(ours, ids, None, Tokenizer())
    assert whole["context_end"] == 40 and whole["replay_prompt"].suffix.tolist() == [[ord("\n")]]
    assert replay_arguments(ours, ids, 30, Tokenizer())["context_end"] == 30
