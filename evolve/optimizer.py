"""CMA-ES through the `cma` package, with the reference defaults and a state file of its own.

Defaults: population 32, initial step 0.065, elite ratio 0.5 (mu = popsize x ratio, log-decreasing
positive weights, no negative "active" update unless asked), mean learning rate 1, mean starting at
zero; separable (diagonal) covariance unless `diagonal=False`. The MEAN is the solution.

The optimiser state is stored without pickle, as a safetensors file (`to_safetensors`): the
settings the strategy was created with (JSON metadata), its starting mean, and the fitness values it
was told, one row per generation, plus the mean and step size reached. Sampling uses a seeded
`numpy.random.Generator` owned by the strategy (option `randn`), so `from_file` rebuilds every internal
path, step-size, covariance and random state exactly by creating the strategy again and replaying its
ask/tell history (milliseconds a generation), then checks that the replay reaches the stored mean and
step size bit for bit (a different `cma` version that changed the arithmetic is refused, not
continued approximately). Loading such a file runs no code from it.

Older run folders hold `cma`'s pickle of the strategy (`.pkl`). Unpickling runs code chosen by whoever
wrote the file, so `from_file` refuses it unless `trust_pickle=True` (`--trust-run-dir` on the command
line); such a run keeps writing pickles, since it has no history to replay.
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np

from core.errors import MissingFileError, UserError

FORMAT = "namm-x/cma-es/1"  # the pickle of older runs
REPLAY_FORMAT = "namm-x/cma-es-replay/1"
_SPEC_TYPES = {"dim": int, "popsize": int, "sigma0": float, "elite_ratio": float, "diagonal": bool, "active": bool,
               "seed": int}


def _of_type(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


class GeneratorNormal:
    """`randn(lam, N)` for cma, drawing from its own Generator (picklable, so the state travels)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape):
        return self.rng.standard_normal(shape)


class CMAES:
    def __init__(self, es, seed: int, spec: dict | None = None, x0: np.ndarray | None = None):
        self.es = es
        self.seed = seed
        self.spec = spec  # create()'s arguments; None for a strategy unpickled from an older run
        self.x0 = x0
        self.told: list[np.ndarray] | None = [] if spec is not None else None  # fitness per tell, for replay

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
        es = cma.CMAEvolutionStrategy(x0.copy(), sigma0, options)
        spec = {"dim": int(dim), "popsize": int(popsize), "sigma0": float(sigma0), "elite_ratio": float(elite_ratio),
                "diagonal": bool(diagonal), "active": bool(active), "seed": int(seed)}
        return cls(es, seed, spec, x0.copy())

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
        if self.told is not None:
            self.told.append(fitness.copy())

    # --- state ---
    @property
    def file_suffix(self) -> str:
        return ".safetensors" if self.told is not None else ".pkl"

    def state_bytes(self) -> bytes:
        """The state file's contents: safetensors, or a pickle for a strategy that came from one."""
        return self.to_safetensors() if self.told is not None else self.to_bytes()

    def to_safetensors(self) -> bytes:
        import cma
        from safetensors.numpy import save

        told = np.stack(self.told) if self.told else np.zeros((0, self.popsize))
        tensors = {"x0": self.x0, "told": told.astype(np.float64), "mean": self.mean,
                   "sigma": np.array([self.sigma], dtype=np.float64)}
        return save(tensors, metadata={"format": REPLAY_FORMAT, "spec": json.dumps(self.spec),
                                       "cma_version": cma.__version__})

    @classmethod
    def from_safetensors(cls, path) -> "CMAES":
        """Create the strategy again and replay its history; refuse if that does not reach the stored state."""
        import cma
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as err:
            raise UserError(f"{path}: not a readable optimiser state ({err})") from None
        if meta.get("format") != REPLAY_FORMAT:
            raise UserError(f"{path}: metadata 'format' is {meta.get('format')!r}, expected {REPLAY_FORMAT!r}")
        try:
            spec = json.loads(meta.get("spec", ""))
        except json.JSONDecodeError:
            raise UserError(f"{path}: metadata 'spec' is not JSON") from None
        if not isinstance(spec, dict) or set(spec) != set(_SPEC_TYPES) or not all(
                _of_type(spec[k], t) for k, t in _SPEC_TYPES.items()):
            raise UserError(f"{path}: metadata 'spec' must hold {', '.join(_SPEC_TYPES)} with their types")
        for key in ("x0", "told", "mean", "sigma"):
            if key not in tensors:
                raise UserError(f"{path}: missing tensor {key!r}")
        dim, popsize = spec["dim"], spec["popsize"]
        told = tensors["told"]
        if tensors["x0"].shape != (dim,) or tensors["mean"].shape != (dim,) or told.ndim != 2 \
                or told.shape[1] != popsize or tensors["sigma"].shape != (1,):
            raise UserError(f"{path}: tensor shapes do not match dim {dim} and popsize {popsize}")
        if not (np.isfinite(told).all() and np.isfinite(tensors["x0"]).all()):
            raise UserError(f"{path}: tensors 'told' and 'x0' must be finite")
        opt = cls.create(x0=tensors["x0"], **spec)
        for row in told:
            opt.tell(opt.ask(), row)
        if not (np.array_equal(opt.mean, tensors["mean"]) and opt.sigma == float(tensors["sigma"][0])):
            raise UserError(f"{path}: replaying the {len(told)} stored generations does not reach the stored mean "
                            f"and step size (written with cma {meta.get('cma_version')}, this is cma "
                            f"{cma.__version__}); resume with that cma version")
        return opt

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump({"format": FORMAT, "dim": self.dim, "popsize": self.popsize, "seed": self.seed, "es": self.es},
                    buffer, protocol=pickle.HIGHEST_PROTOCOL)
        return buffer.getvalue()

    @classmethod
    def from_file(cls, path, trust_pickle: bool = False) -> "CMAES":
        """A .safetensors state (no code runs), or an older run's pickle when `trust_pickle`."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"optimiser state {path} does not exist")
        if path.suffix == ".safetensors":
            return cls.from_safetensors(path)
        if not trust_pickle:
            raise UserError(f"{path}: an optimiser state in the older pickle format; unpickling runs code from the "
                            f"file, so it is loaded only if you trust whoever wrote {path.parent}: pass "
                            f"--trust-run-dir")
        try:
            with path.open("rb") as f:
                data = pickle.load(f)
        except Exception as err:  # noqa: BLE001 - any unpickling failure means an unreadable file
            raise ValueError(f"{path}: not a readable optimiser state ({type(err).__name__}: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a NAMM-X CMA-ES state (expected format {FORMAT!r})")
        return cls(data["es"], data["seed"])
