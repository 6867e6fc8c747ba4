"""Our NAMM core against numbers produced by the reference implementation (evo-memory)."""
from pathlib import Path
import numpy as np
import pytest
import torch

from core.memory import LayerMemory
from core.namm import NAMM
from core.spectrogram import EMA


FIXTURE = Path(__file__).parent / "fixtures" / "evo_memory_parity_kv.npz"


@pytest.fixture(scope="module")
def anchor():
    """The reference anchors (see tests/fixtures/README.md): attention already averaged over each KV
    head's query group, exactly as the adapter hands it to a policy."""
    return dict(np.load(FIXTURE))


def kv_head_probs(probs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(probs).unsqueeze(0)


def run_update(namm, mem, probs, chunk):
    rows = probs.shape[2]
    mem.advance(rows)
    for start in range(0, rows, chunk):
        namm.observe(mem, probs[:, :, start:start + chunk], rows_left=max(0, rows - start - chunk))
    features = namm.features(mem)[0]
    scores = namm.scores(mem)[0]
    keep = namm.select(mem)
    return features, scores, keep


@pytest.mark.parametrize("chunk", [1000, 128, 48])
def test_two_updates_match_reference(anchor, chunk):
    namm = NAMM(params=anchor["params"], norm_mean=anchor["norm_mean"], norm_var=anchor["norm_var"])
    mem = LayerMemory()
    for update, n_new in (("u1", 608), ("u2", 512)):
        mem.append(torch.zeros(1, 3, n_new, 4), torch.zeros(1, 3, n_new, 4))
        np.testing.assert_array_equal(mem.positions[0].numpy(), anchor[f"{update}_key_positions"])
        features, scores, keep = run_update(namm, mem, kv_head_probs(anchor[f"{update}_kv_probs"]), chunk)
        np.testing.assert_allclose(mem.state[EMA][0].numpy(), anchor[f"{update}_spec_ema_prenorm"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(features.numpy(), anchor[f"{update}_features"], atol=1e-5, rtol=0)
        np.testing.assert_allclose(scores.numpy(), anchor[f"{update}_scores"], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(keep[0].numpy(), anchor[f"{update}_retained_idx"])
        mem.evict(keep)
        np.testing.assert_array_equal(mem.positions[0].numpy(), anchor[f"{update}_retained_positions"])
        if update == "u1":
            np.testing.assert_allclose(mem.state[EMA][0].numpy(), anchor["u1_state_ema_out"], atol=1e-6, rtol=0)
            carry = mem.state["spec_buffer"][0].numpy()
            np.testing.assert_allclose(carry, anchor["u1_state_attn_carry_out"], atol=1e-7, rtol=0)


def test_age_embedding_matches_reference_table(anchor):
    from core.features import age_embedding

    table = age_embedding(torch.arange(8))
    np.testing.assert_allclose(table.numpy(), anchor["age_embedding_table_first_8"], atol=1e-7)


def test_window_matches_reference(anchor):
    from core.spectrogram import StreamingSpectrogram

    spec = StreamingSpectrogram()
    impulse = torch.zeros(32)
    impulse[5] = 1.0
    # The magnitude of a windowed impulse is the window value at that sample in every bin.
    np.testing.assert_allclose(spec.frames(impulse)[0].numpy(), np.full(17, anchor["stft_window"][5]), atol=1e-7)
