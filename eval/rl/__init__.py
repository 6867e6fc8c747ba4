"""RL evaluation for NAMM-X: D4RL/Minari data, normalised scores, Decision Transformer
loading and rollouts. `python -m eval.rl` is reserved for memory-policy evaluation."""
from .scores import REF_SCORES, normalized_score

__all__ = ["REF_SCORES", "normalized_score"]
