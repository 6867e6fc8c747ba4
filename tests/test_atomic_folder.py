"""Checkpoint folders are swapped in whole: a failed save leaves the old folder as it was."""
import os
import stat

import pytest

from core.atomic import write_folder_atomic


def test_failed_fill_leaves_the_old_folder_and_no_litter(tmp_path):
    out = tmp_path / "ckpt"
    write_folder_atomic(out, lambda d: (d / "model.bin").write_text("v1"))

    def broken(d):
        (d / "model.bin").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_folder_atomic(out, broken)
    assert (out / "model.bin").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_replaces_files_keeps_what_keep_allows_and_is_not_private(tmp_path):
    out = tmp_path / "ckpt"
    write_folder_atomic(out, lambda d: [(d / "model.bin").write_text("v1"), (d / "stale.json").write_text("{}")])
    (out / "README.md").write_text("model card")
    write_folder_atomic(out, lambda d: (d / "model.bin").write_text("v2"), keep=lambda e: e.name == "README.md")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "model.bin"]
    assert (out / "model.bin").read_text() == "v2" and (out / "README.md").read_text() == "model card"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((out / "model.bin").stat().st_mode) == 0o666 & ~umask
