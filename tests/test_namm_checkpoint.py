"""NAMM checkpoints: round trip, reference layout, and clear errors on bad files."""
import json

import numpy as np
import pytest
import torch

from core.namm import NAMM, NAMMConfig


def test_save_and_load_round_trip(tmp_path):
    namm = NAMM(params=torch.randn(4172), norm_mean=torch.full((17,), 0.2), norm_var=torch.full((17,), 0.3))
    namm.save_pretrained(tmp_path / "ckpt")
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["config.json", "model.safetensors"]
    loaded = NAMM.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.params, namm.params)
    assert torch.equal(loaded.normaliser.var, namm.normaliser.var)
    assert loaded.config == namm.config
    assert (tmp_path / "ckpt" / "model.safetensors").stat().st_size < 40_000


def test_reference_flat_vector_loads(tmp_path):
    vector = np.random.default_rng(0).normal(size=4172).astype(np.float32)
    np.save(tmp_path / "params.npy", vector)
    namm = NAMM.from_flat(tmp_path / "params.npy")
    params = namm.config.bam.unflatten(namm.params)
    np.testing.assert_array_equal(params["w_qkv"].numpy(), vector[:2400].reshape(25, 96))
    assert float(params["b_out"]) == vector[-1]


def test_wrong_parameter_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="4172 parameters, got a vector of 4000"):
        NAMM(params=np.zeros(4000))
    from safetensors.torch import save_file

    NAMM.zeros().save_pretrained(tmp_path)
    save_file({"params": torch.zeros(10), "norm_mean": torch.zeros(17), "norm_var": torch.ones(17)},
              str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: 'params' has 10 values.*4172"):
        NAMM.from_pretrained(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NAMM.from_pretrained(tmp_path / "nowhere")
    NAMM.zeros().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no model.safetensors"):
        NAMM.from_pretrained(tmp_path)


def test_bad_config_fields_are_named(tmp_path):
    NAMM.zeros().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["n_upp"] = 3
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config.json: unknown NAMM config field\(s\) \['n_upp'\]"):
        NAMM.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{\n  \"n_up\": 512,\n  oops\n}")
    with pytest.raises(ValueError, match="config.json: not valid JSON \\(line 3"):
        NAMM.from_pretrained(tmp_path)


def test_config_hyperparameters_survive(tmp_path):
    namm = NAMM(NAMMConfig(n_up=256, update_at_prompt_end=True))
    namm.save_pretrained(tmp_path)
    loaded = NAMM.from_pretrained(tmp_path)
    assert loaded.n_up == 256 and loaded.update_at_prompt_end


def test_unsupported_model_family_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    from adapters.hf import attach

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=32))
    with pytest.raises(ValueError, match="model family 'gpt2'"):
        with attach(model, NAMM.zeros()):
            pass


def test_n_params_in_config_json_is_checked(tmp_path):
    from core.errors import UserError

    NAMM.zeros().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["n_params"] == 4172
    data["n_params"] = 2124  # says another NAMM than the other fields describe
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"config.json: field 'n_params' is 2124, but the other fields describe a "
                                        r"NAMM with 4172 parameters"):
        NAMM.from_pretrained(tmp_path)


@pytest.mark.parametrize("text, words", [("[1, 2]", "expected a JSON object of NAMM config fields, got list"),
                                         (b"\xff\xfe{}", "not UTF-8 text"),
                                         ('{"n_up": "many"}', "config.json")])
def test_a_config_json_that_is_not_an_object_is_named(tmp_path, text, words):
    from core.errors import UserError

    NAMM.zeros().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(UserError, match=words):
        NAMM.from_pretrained(tmp_path)
