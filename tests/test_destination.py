"""The destination rule shared by the commands that write model folders, and the resumable folders it lets by."""
import pytest
import torch
from safetensors.torch import save_file

from core.destination import check_destination, discard_folder, replace_folder
from core.errors import ExistsError, UserError
from zoo.video import lm_stage


def test_new_and_empty_folders_pass_a_full_one_needs_overwrite_a_file_never(tmp_path):
    assert check_destination(tmp_path / "new", False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check_destination(tmp_path / "empty", False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "README.md").write_text("card")
    with pytest.raises(ExistsError, match=r"full: the output folder is not empty; pass --overwrite"):
        check_destination(tmp_path / "full", False)
    check_destination(tmp_path / "full", True)
    check_destination(tmp_path / "full", False, own_run=lambda p: (p / "README.md").is_file())
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="file: the output folder is a file"):
        check_destination(tmp_path / "file", True)
    assert not (tmp_path / "new").exists()  # a check creates nothing


def test_replace_folder_leaves_nothing_of_the_old_one_and_a_failure_changes_nothing(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "README.md").write_text("old card")
    (out / "transfer").mkdir()
    replace_folder(out, lambda d: (d / "model.bin").write_text("new"))
    assert sorted(p.name for p in out.iterdir()) == ["model.bin"]

    def broken(d):
        (d / "model.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replace_folder(out, broken)
    assert (out / "model.bin").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    discard_folder(out)
    assert list(tmp_path.iterdir()) == []


def _stage(folder, steps=10):
    folder.mkdir(parents=True)
    save_file({"layers.0.lora_a": torch.ones(2, 2)}, folder / lm_stage.ADAPTER)
    (folder / lm_stage.SETTINGS).write_text('{"rank": 2, "alpha": 4.0, "base": "smollm2"}')
    (folder / lm_stage.LOG).write_text(f'{{"step": {steps}}}\n')
    (folder / lm_stage.STATE).write_bytes(b"optimiser")


def test_lm_stage_copy_updates_its_own_copy_and_refuses_anything_else(tmp_path):
    _stage(tmp_path / "stage")
    copy = tmp_path / "copy"
    assert lm_stage.main(["--out", str(tmp_path / "stage"), "--copy-to", str(copy)]) == 0
    assert sorted(p.name for p in copy.iterdir()) == sorted([lm_stage.ADAPTER, lm_stage.SETTINGS, lm_stage.LOG])
    (tmp_path / "stage" / lm_stage.LOG).write_text('{"step": 20}\n')
    assert lm_stage.main(["--out", str(tmp_path / "stage"), "--copy-to", str(copy)]) == 0  # a compact copy: updated
    assert (copy / lm_stage.LOG).read_text() == '{"step": 20}\n'
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "vision.safetensors").write_bytes(b"weights")
    with pytest.raises(ExistsError, match="model: the --copy-to folder is not empty; pass --overwrite"):
        lm_stage.main(["--out", str(tmp_path / "stage"), "--copy-to", str(tmp_path / "model")])
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["vision.safetensors"]
    assert lm_stage.is_stage_folder(tmp_path / "stage") and not lm_stage.is_stage_folder(tmp_path / "model")
