"""NAMM-X's optional max_received column: the most attention one query paid each token since it arrived."""
import pytest
import torch

from adapters.hf.attention import causal_mask
from core import signals
from core.memory import LayerMemory
from core.namm import NAMM, NAMMConfig
from core.namm_x import baseline_readout, start_readouts
from core.selection import keep_top, protect_newest


def causal_block(rows: int, visible: int, heads: int, seed: int) -> torch.Tensor:
    """Attention [1, heads, rows, visible] of the newest `rows` queries, each seeing the tokens up to itself."""
    logits = torch.randn(1, heads, rows, visible, generator=torch.Generator().manual_seed(seed))
    return logits.masked_fill(~causal_mask(rows, visible, logits.device), float("-inf")).softmax(dim=-1)


def test_the_column_holds_the_largest_attention_any_query_paid_across_blocks_and_evictions():
    mem = LayerMemory()
    blocks = [causal_block(6, 6, 2, seed=0), causal_block(4, 10, 2, seed=1)]
    keys = torch.randn(1, 2, 10, 4)
    mem.append(keys[:, :, :6], keys[:, :, :6])
    mem.advance(6)
    signals.observe_max_received(mem, blocks[0])
    mem.append(keys[:, :, 6:], keys[:, :, 6:])
    mem.advance(4)
    signals.observe_max_received(mem, blocks[1])
    expected = torch.zeros(1, 2, 10)
    expected[..., :6] = blocks[0].amax(dim=2)
    expected = torch.maximum(expected, blocks[1].amax(dim=2))
    assert torch.equal(mem.state[signals.MAX_RECEIVED], expected)
    keep = torch.tensor([[[0, 3, 7, 9], [1, 2, 8, 9]]])
    mem.evict(keep)
    assert torch.equal(mem.state[signals.MAX_RECEIVED], expected.gather(-1, keep))


def test_its_one_hot_readout_keeps_the_tokens_with_the_highest_head_averaged_maximum():
    config = NAMMConfig(features="namm_x", selection="topk", budget=0.4, head_mode="shared", max_received=True)
    namm = NAMM(config, baseline_readout(config.feature_names, 0, "max_received"))
    mem = LayerMemory()
    keys = torch.randn(1, 3, 30, 4, generator=torch.Generator().manual_seed(2))
    mem.append(keys, keys)
    mem.advance(30)
    probs = causal_block(30, 30, 3, seed=3)
    namm.observe(mem, probs, rows_left=0)
    expected = keep_top(protect_newest(probs.amax(dim=2).mean(dim=1, keepdim=True)), 12)
    keep = namm.select(mem)
    assert keep.shape == (1, 3, 12)
    assert all(torch.equal(keep[:, h], expected[:, 0]) for h in range(3))


def test_the_column_is_an_option_that_leaves_existing_checkpoints_unchanged(tmp_path):
    plain = NAMMConfig(features="namm_x", selection="topk")
    extended = NAMMConfig(features="namm_x", selection="topk", max_received=True)
    assert "max_received" not in plain.feature_names
    assert extended.feature_names == plain.feature_names[:5] + ("max_received",) + plain.feature_names[5:]
    assert extended.n_params == plain.n_params + 1
    shipped = NAMM.from_pretrained("checkpoints/namm-x-smollm2")
    assert not shipped.config.max_received and len(shipped.config.feature_names) == 25
    namm = NAMM(extended, torch.randn(extended.n_params, generator=torch.Generator().manual_seed(0)))
    namm.save_pretrained(tmp_path / "x")
    back = NAMM.from_pretrained(tmp_path / "x")
    assert back.config.max_received and torch.equal(back.params, namm.params)


def test_the_start_measures_its_readout_only_where_the_column_exists():
    plain = NAMMConfig(features="namm_x").feature_names
    extended = NAMMConfig(features="namm_x", max_received=True).feature_names
    assert "max_received" not in start_readouts(plain)
    assert start_readouts(extended)[-1] == "max_received"
    with pytest.raises(ValueError, match="max_received: true"):
        baseline_readout(plain, 0, "max_received")


def test_an_evolution_config_asking_for_its_start_without_the_column_is_refused(tmp_path):
    from evolve.config import load_config

    text = tmp_path / "c.yaml"
    text.write_text("fitness: toy\nnamm: {features: namm_x, selection: topk}\ninit_readout: max_received\n"
                    "stages:\n  - {name: s, tasks: [a], generations: 1, prompts_per_task: 1, prompt_length: 64}\n")
    with pytest.raises(Exception, match="init_readout.*max_received to true"):
        load_config(text)
