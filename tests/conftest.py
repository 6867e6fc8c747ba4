import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

torch.set_num_threads(int(os.environ.get("NAMMX_TEST_THREADS", "2")))

# A two-stage evolution without a model (seconds), shared by the run-folder tests.
TOY_TWO_STAGES = """
fitness: toy
seed: 3
popsize: 6
eval_every: 2
stages:
  - {name: one, tasks: [a], generations: 2, prompts_per_task: 1, prompt_length: 64}
  - {name: two, tasks: [a, b], generations: 2, prompts_per_task: 1, prompt_length: 64}
"""


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Real benchmark files kept in the repository (tests/fixtures/README.md says where each comes from)."""
    return FIXTURES


@pytest.fixture(scope="session")
def smollm2():
    from adapters.loading import load_model

    return load_model("smollm2")


@pytest.fixture
def one_thread():
    """Per-step calls of a tiny model: extra threads only add sync cost (x30 on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class FakeTokenizer:
    """Four characters a token; enough of a tokenizer for eval.lm's built-in tasks."""

    eos_token_id = 0
    chat_template = "<user>{content}<assistant>"  # what apply_chat_template below writes

    def __call__(self, text, return_tensors=None, add_special_tokens=True):
        from types import SimpleNamespace

        ids = list(range(1, max(1, len(text) // 4) + 1))
        return SimpleNamespace(input_ids=torch.tensor([ids]) if return_tensors == "pt" else ids)

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "<user>" + messages[0]["content"] + "<assistant>"

    def decode(self, tokens, skip_special_tokens=True):
        return "0"


@pytest.fixture
def fake_lm(monkeypatch):
    """eval.lm without a model: load_model gives a stub (context 8192) and greedy_generate reports the
    cache fraction the policy would aim at (a baseline's budget, 0.5 for a NAMM with any non-zero
    parameter). Returns the list of (policy name, prompt tokens) generated, to count recomputations; its
    `policies` holds the policy objects."""
    from types import SimpleNamespace

    import eval.lm.run as run

    class Calls(list):
        policies: list = []
        exact: list = []  # the attention path of each call

    calls = Calls()
    calls.policies, calls.exact = [], []

    def load_model(name, dtype="float32"):
        return SimpleNamespace(config=SimpleNamespace(max_position_embeddings=8192)), FakeTokenizer()

    def greedy_generate(model, ids, policy, max_new_tokens, eos_token_id, context_end=None, replay_prompt=None,
                        exact=False):
        calls.append((policy.name, ids.shape[1]))
        calls.exact.append(exact)
        calls.policies.append(policy)
        if policy.name == "namm":
            if policy.config.selection == "topk":
                fraction = float(policy.budget.value)
            else:
                fraction = 0.5 if bool(policy.params.abs().sum() > 0) else 1.0
        elif hasattr(policy, "budget"):
            fraction = float(policy.budget.value)
        else:
            fraction = 1.0
        return SimpleNamespace(tokens=[[1]], cache_fraction=fraction, fraction_at_update=fraction,
                               processed_tokens=ids.shape[1], replay_seconds=0.0)

    monkeypatch.setattr(run, "load_model", load_model)
    monkeypatch.setattr(run, "greedy_generate", greedy_generate)
    return calls


@pytest.fixture
def window_namm(tmp_path):
    """Writes NAMM checkpoints that really evict: `window_namm(window, n_up, at_prompt_end)` gives a folder
    whose NAMM keeps the newest window + 1 tokens at every update. Its BAM reads only the slowest age
    feature, sin(age * f) ~ age * f, so a token scores window + 1/2 - age."""
    from core.namm import NAMM, NAMMConfig

    def make(window: int, n_up: int, at_prompt_end: bool = False):
        config = NAMMConfig(n_up=n_up, update_at_prompt_end=at_prompt_end)
        params = torch.zeros(config.bam.n_params)
        parts = config.bam.unflatten(params)  # views into params
        half = config.age_dims // 2
        slowest = config.age_base ** (-(half - 1) / half)
        parts["w_out"][half - 1, 0] = -1.0 / slowest
        parts["b_out"][0] = window + 0.5
        folder = tmp_path / f"window{window}-nup{n_up}-{'end' if at_prompt_end else 'noend'}"
        NAMM(config, params).save_pretrained(folder)
        return folder

    return make
