"""A damaged NAMM checkpoint is refused with one message naming the file and the field or tensor."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO
from core.checkpoint_checks import NAMM_TENSORS, check_config_numbers, check_tensors
from core.errors import UserError
from core.namm import NAMM

SHIPPED = REPO / "checkpoints" / "namm-smollm2"


@pytest.fixture
def ckpt(tmp_path):
    folder = tmp_path / "namm"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(SHIPPED / name, folder / name)
    return folder


def _edit_tensors(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def _edit_config(folder, key, raw):
    text = (folder / "config.json").read_text()
    data = json.loads(text)
    assert key in data
    old = json.dumps(data[key])
    (folder / "config.json").write_text(text.replace(f'"{key}": {old}', f'"{key}": {raw}', 1))


def test_the_copy_loads(ckpt):
    assert NAMM.from_pretrained(ckpt).n_params == 4172


@pytest.mark.parametrize("name, index, value", [("norm_mean", 3, float("nan")), ("norm_var", 0, float("inf")),
                                                ("params", 100, float("-inf"))])
def test_a_non_finite_tensor_is_named(ckpt, name, index, value):
    _edit_tensors(ckpt, lambda t: t[name].view(-1).__setitem__(index, value))
    with pytest.raises(UserError, match=rf"model\.safetensors: tensor '{name}' holds 1 non-finite"):
        NAMM.from_pretrained(ckpt)


def test_an_unknown_tensor_is_named(ckpt):
    _edit_tensors(ckpt, lambda t: t.__setitem__("extra", torch.zeros(3)))
    with pytest.raises(UserError, match=r"model\.safetensors: unknown tensor\(s\) 'extra'"):
        NAMM.from_pretrained(ckpt)


def test_a_negative_variance_is_named(ckpt):
    _edit_tensors(ckpt, lambda t: t["norm_var"].view(-1).__setitem__(2, -1.0))
    with pytest.raises(UserError, match=r"model\.safetensors: tensor 'norm_var' has negative values"):
        NAMM.from_pretrained(ckpt)


@pytest.mark.parametrize("key, raw", [("gamma", "NaN"), ("threshold", "Infinity"), ("age_base", "-Infinity")])
def test_a_non_finite_config_number_is_named(ckpt, key, raw):
    _edit_config(ckpt, key, raw)
    with pytest.raises(UserError, match=rf"config\.json: field '{key}' is (nan|inf|-inf)"):
        NAMM.from_pretrained(ckpt)


def test_nested_fields_and_allowed_names_are_parameters():
    with pytest.raises(UserError, match=r"c\.json: field 'stages\[1\]\.sigma' is nan"):
        check_config_numbers({"stages": [{"sigma": 1.0}, {"sigma": float("nan")}], "ok": True}, "c.json")
    check_config_numbers({"a": [1, 2.5, {"b": False}], "c": None}, "c.json")
    more = {"params": torch.zeros(2), "norm_mean": torch.zeros(2), "norm_var": torch.ones(2), "gate": torch.ones(1)}
    check_tensors(more, "w", NAMM_TENSORS | {"gate"})  # a new checkpoint kind extends the set
    with pytest.raises(UserError, match="'gate'"):
        check_tensors(more, "w", NAMM_TENSORS)


def test_save_pretrained_onto_a_file_names_it(tmp_path):
    target = tmp_path / "namm"
    target.write_text("not a folder")
    with pytest.raises(UserError, match="namm: the NAMM checkpoint folder is a file"):
        NAMM.zeros().save_pretrained(target)
    assert target.read_text() == "not a folder"
