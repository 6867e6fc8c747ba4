"""Distillation of a baseline's keep/evict decisions into a starting NAMM."""
import pytest
import torch

from adapters.hf import greedy_generate
from core.namm import NAMM, NAMMConfig
from core.policies import H2O
from evolve.distill import Imitation, agreement, fit
from tests.test_evolve_graded_fitness import N_UP, tiny_llama


def test_imitation_acts_as_the_teacher_and_records_its_choices(one_thread):
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 4 * N_UP + 3), generator=torch.Generator().manual_seed(0))
    alone = greedy_generate(model, ids, H2O(0.4, n_up=N_UP), max_new_tokens=4)
    policy = Imitation(H2O(0.4, n_up=N_UP), NAMM.zeros(NAMMConfig(n_up=N_UP)))
    imitated = greedy_generate(model, ids, policy, max_new_tokens=4)
    assert imitated.tokens == alone.tokens and imitated.kept_tokens == alone.kept_tokens
    assert len(policy.records) == 3 * 4  # 3 layers x 4 updates
    feats, kept = policy.records[-1]
    assert feats.shape[-1] == 25 and feats.shape[:2] == kept.shape
    assert 0.3 < kept.float().mean() < 0.8  # the teacher kept part of the observed tokens


def test_fit_learns_a_rule_the_features_express():
    g = torch.Generator().manual_seed(0)
    records = []
    for _ in range(12):
        feats = torch.randn(2, 60, 25, generator=g)
        records.append((feats, feats[..., 12] + 0.5 * feats[..., 3] > 0.2))
    student = NAMM.zeros()
    before = agreement(student, records)["agreement"]
    fit(student, records, steps=150, lr=1e-2, batch=4)
    after = agreement(student, records)
    assert after["agreement"] > 0.95 > before + 0.3
    assert abs(after["student_keep"] - after["teacher_keep"]) < 0.05


@pytest.mark.parametrize("teacher", ["oracle", "kvzip"])
def test_a_readout_teacher_on_the_paper_architecture_is_refused_before_any_model_loads(tmp_path, teacher):
    from core.errors import UserError
    from evolve.distill import main

    with pytest.raises(UserError, match=f"--teacher {teacher}: oracle and kvzip fit a NAMM-X readout"):
        main(["--config", "configs/evolve_smollm2_cpu.yaml", "--teacher", teacher, "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()
