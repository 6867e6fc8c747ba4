"""Memory policies behind one interface: the baselines the NAMM is compared to (core/registry.py builds any
policy, the NAMM included, by name)."""
from core.policies.adakv import AdaKV
from core.policies.base import Budget, BudgetPolicy, MemoryPolicy, Schedule
from core.policies.expected_attention import ExpectedAttention
from core.policies.full import FullCache
from core.policies.h2o import H2O
from core.policies.kvzip import KVzip
from core.policies.l2 import L2Norm
from core.policies.random_policy import RandomEviction
from core.policies.recency import Recency
from core.policies.snapkv import SnapKV
from core.policies.tova import TOVA, TOVAPerHead

BASELINES = {cls.name: cls for cls in (Recency, H2O, L2Norm, TOVA, TOVAPerHead, SnapKV, RandomEviction,
                                        ExpectedAttention, KVzip)}

__all__ = ["Budget", "BudgetPolicy", "MemoryPolicy", "Schedule", "FullCache", "H2O", "L2Norm", "RandomEviction",
           "Recency", "SnapKV", "TOVA", "TOVAPerHead", "ExpectedAttention", "AdaKV", "KVzip", "BASELINES"]
