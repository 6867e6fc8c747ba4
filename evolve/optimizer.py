"""CMA-ES through the `cma` package, with the reference defaults and a state file of its own.

Defaults: population 32, initial step 0.065, elite ratio 0.5 (mu = popsize x ratio, log-decreasing
positive weights, no negative "active" update unless asked), mean learning rate 1, mean starting at
zero; separable (diagonal) covariance unless `diagonal=False`. The MEAN is the solution.

The optimiser state is `cma`'s own pickle of the strategy (the only exact way to rebuild every
internal path, step-size and covariance variable), kept in its own file beside the policy
checkpoint. Sampling uses a seeded `numpy.random.Generator` owned by the strategy (option `randn`),
so the pickle carries the random state too and a resumed run draws exactly the same members.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

FORMAT = "namm-x/cma-es/1"


class GeneratorNormal:
    """`randn(lam, N)` for cma, drawing from its own Generator (picklable, so the state travels)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


class CMAES:
    def __init__(self, es, seed: int):
        self.es = es
        self.seed = seed

    @classmethod
    def create(cls, dim: int, popsize: int = 32, sigma0: float = 0.065, elite_ratio: float = 0.5,
               diagonal: bool = True, active: bool = False, seed: int = 0, x0=None) -> "CMAES":
        import cma

        mu = max(1, int(popsize * elite_ratio))
        options = {
            "popsize": popsize,
            "CMA_mu": mu,
            "CMA_cmean": 1.0,
            "CMA_diagonal": True if diagonal else 0,
            "CMA_active": bool(active),
            "randn": GeneratorNormal(seed),
            "seed": np.nan,  # the global numpy RNG is left alone: sampling goes through `randn`
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "tolflatfitness": 10**9,  # never stop on its own; the stages decide the length
            "tolfun": 0, "tolfunhist": 0, "tolx": 0, "tolstagnation": 10**9, "maxiter": 10**12,
        }
        x0 = np.zeros(dim) if x0 is None else np.asarray(x0, dtype=np.float64).reshape(dim)
        es = cma.CMAEvolutionStrategy(x0, sigma0, options)
        return cls(es, seed)

    @property
    def dim(self) -> int:
        return int(self.es.N)

    @property
    def popsize(self) -> int:
        return int(self.es.popsize)

    @property
    def mean(self) -> np.ndarray:
        return np.array(self.es.mean, dtype=np.float64)

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    @property
    def iterations(self) -> int:
        return int(self.es.countiter)

    def ask(self) -> np.ndarray:
        return np.asarray(self.es.ask(), dtype=np.float64)

    def tell(self, solutions: np.ndarray, fitness: np.ndarray) -> None:
        """`fitness` is maximised (cma minimises, so it is told the negatives)."""
        fitness = np.asarray(fitness, dtype=np.float64)
        if not np.all(np.isfinite(fitness)):
            raise ValueError(f"non-finite fitness values: {fitness.tolist()}")
        self.es.tell(list(np.asarray(solutions)), (-fitness).tolist())

    # --- state ---
    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump({"format": FORMAT, "dim": self.dim, "popsize": self.popsize, "seed": self.seed, "es": self.es},
                    buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path) -> "CMAES":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"optimiser state {path} does not exist")
        try:
            with path.open("rb") as f:
                data = pickle.load(f)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable file
            raise ValueError(f"{path}: not a readable optimiser state ({type(err).__name__}: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a NAMM-X CMA-ES state (expected format {FORMAT!r})")
        return cls(data["es"], data["seed"])
