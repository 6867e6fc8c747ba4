"""A damaged Decision Transformer checkpoint is refused with a message naming the file and the field or tensor."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO
from core.errors import UserError
from eval.rl.dt_model import load_dt


@pytest.fixture
def dt(tmp_path):
    folder = tmp_path / "dt"
    shutil.copytree(REPO / "checkpoints" / "dt-hopper", folder)
    return folder


def _edit_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_a_nan_in_dt_meta_is_named(dt):
    meta = json.loads((dt / "dt_meta.json").read_text())
    meta["scale"] = float("nan")
    meta["state_std"][2] = float("inf")
    (dt / "dt_meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"dt_meta\.json: field '(scale|state_std\[2\])' is (nan|inf)"):
        load_dt(dt)


def test_a_non_finite_weight_is_named(dt):
    name = next(iter(load_file(dt / "model.safetensors")))
    _edit_weights(dt, lambda t: t[name].view(-1).__setitem__(0, float("nan")))
    with pytest.raises(UserError, match=r"model\.safetensors: tensor '.*' holds 1 non-finite"):
        load_dt(dt)


def test_an_unknown_or_missing_tensor_is_named(dt):
    _edit_weights(dt, lambda t: t.__setitem__("extra.weight", torch.zeros(2)))
    with pytest.raises(UserError, match=r"model\.safetensors: unknown tensor\(s\) 'extra\.weight'"):
        load_dt(dt)
    _edit_weights(dt, lambda t: (t.pop("extra.weight"), t.pop(sorted(t)[0])))
    with pytest.raises(UserError, match=r"model\.safetensors: missing tensor\(s\)"):
        load_dt(dt)


def test_the_shipped_dt_loads(dt):
    assert load_dt(dt).state_dim == 11
