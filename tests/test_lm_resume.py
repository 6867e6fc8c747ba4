"""eval.lm resumes only predictions made with the same settings, and repairs what a kill leaves."""
import json
import struct

import numpy as np
import pytest

from core.namm import NAMM
from eval.lm.__main__ import main

BASE = ["--tasks", "passkey", "--n", "2", "--length", "200", "--threads", "1"]


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_a_rerun_with_another_budget_does_not_reuse_predictions(tmp_path, fake_lm):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "h2o", "--budget", "0.9", "--out-dir", str(out)]) == 0
    assert _results(out)["policies"]["h2o"]["passkey"]["cache_fraction"] == pytest.approx(0.9)
    assert main(BASE + ["--policies", "h2o", "--budget", "0.1", "--out-dir", str(out)]) == 0
    assert _results(out)["policies"]["h2o"]["passkey"]["cache_fraction"] == pytest.approx(0.1)
    assert len(fake_lm) == 4
    # Back to 0.9: those rows are still in the file and are reused, nothing is recomputed.
    assert main(BASE + ["--policies", "h2o", "--budget", "0.9", "--out-dir", str(out)]) == 0
    assert _results(out)["policies"]["h2o"]["passkey"]["cache_fraction"] == pytest.approx(0.9)
    assert len(fake_lm) == 4


@pytest.mark.parametrize("flag", [["--n-up", "64"], ["--no-prompt-end"], ["--seed", "1"], ["--model", "other"],
                                  ["--dtype", "bfloat16"]])
def test_other_settings_that_change_a_prediction_are_recomputed(tmp_path, fake_lm, flag):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "h2o", "--out-dir", str(out)]) == 0
    assert main(BASE + ["--policies", "h2o", "--out-dir", str(out)] + flag) == 0
    assert len(fake_lm) == 4


def test_the_dtype_is_in_the_results_and_a_float32_rerun_reuses_rows_stored_before_it_was_recorded(tmp_path, fake_lm):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "h2o", "--dtype", "bfloat16", "--out-dir", str(out)]) == 0
    assert _results(out)["dtype"] == "bfloat16"
    path = out / "preds" / "h2o" / "passkey.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:  # as a float32 row written before --dtype existed reads back
        del row["settings"]["dtype"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(BASE + ["--policies", "h2o", "--out-dir", str(out)]) == 0
    assert _results(out)["dtype"] == "float32"
    assert len(fake_lm) == 2


def test_a_rerun_with_another_checkpoint_does_not_reuse_the_zero_namm(tmp_path, fake_lm):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "namm", "--ckpt", "zeros", "--out-dir", str(out)]) == 0
    assert _results(out)["policies"]["namm"]["passkey"]["cache_fraction"] == 1.0
    ckpt = tmp_path / "namm"
    zero = NAMM.zeros()
    NAMM(zero.config, np.full(zero.n_params, 0.01, dtype=np.float32)).save_pretrained(ckpt)
    assert main(BASE + ["--policies", "namm", "--ckpt", str(ckpt), "--out-dir", str(out)]) == 0
    assert _results(out)["policies"]["namm"]["passkey"]["cache_fraction"] == 0.5
    # Same folder, new content: the hash changes, so the predictions are made again.
    NAMM(zero.config, np.full(zero.n_params, -0.01, dtype=np.float32)).save_pretrained(ckpt)
    assert main(BASE + ["--policies", "namm", "--ckpt", str(ckpt), "--out-dir", str(out)]) == 0
    assert len(fake_lm) == 6


def test_a_torn_last_line_is_cut_before_the_recomputed_row_is_appended(tmp_path, fake_lm):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 0
    path = out / "preds" / "full" / "passkey.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed while writing row 2
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 0
    rows = [json.loads(line) for line in path.read_text().splitlines()]  # every line is valid JSON
    assert [r["id"] for r in rows] == [json.loads(line)["id"] for line in lines]
    assert len(fake_lm) == 3


def test_a_line_without_id_is_an_error_naming_file_and_line(tmp_path, fake_lm, capsys):
    out = tmp_path / "run"
    path = out / "preds" / "full" / "passkey.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"prediction": "1", "cache_fraction": 1.0, "seconds": 0.1}) + "\n")
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: missing field 'id'" in err and "Traceback" not in err


def _safetensors(note: str) -> bytes:
    """A weights file with no tensors whose header (and so size) depends on `note`."""
    header = json.dumps({"__metadata__": {"note": note}}).encode()
    return struct.pack("<Q", len(header)) + header


def test_a_model_folder_with_new_weights_is_recomputed(tmp_path, fake_lm):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 8192}))
    (model / "model.safetensors").write_bytes(_safetensors("1"))
    out = tmp_path / "run"
    argv = BASE + ["--policies", "full", "--model", str(model), "--out-dir", str(out)]
    assert main(argv) == 0 and main(argv) == 0
    assert len(fake_lm) == 2
    (model / "model.safetensors").write_bytes(_safetensors("22"))  # retrained into the same folder
    assert main(argv) == 0
    assert len(fake_lm) == 4


def test_results_of_a_revised_rule_are_recomputed_and_others_are_kept(tmp_path, fake_lm):
    """SnapKV's rule was revised (revision 2): rows stored by revision 1 carry no rule_revision and must be
    made again; H2O's rows (still revision 1) stay valid."""
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "h2o,snapkv", "--out-dir", str(out)]) == 0
    path = out / "preds" / "snapkv" / "passkey.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["settings"]["rule_revision"] == 2 for r in rows)
    assert all("rule_revision" not in json.loads(line)["settings"]
               for line in (out / "preds" / "h2o" / "passkey.jsonl").read_text().splitlines())
    for r in rows:
        del r["settings"]["rule_revision"]  # as revision 1 stored them
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(BASE + ["--policies", "h2o,snapkv", "--out-dir", str(out)]) == 0
    assert [name for name, _ in fake_lm] == ["h2o", "h2o", "snapkv", "snapkv", "snapkv", "snapkv"]


def test_choubun_rows_made_with_other_templates_are_not_reused(tmp_path):
    """The ChouBun templates were replaced by the project's own: a stored row without the current templates'
    version (the reference's templates) is not read back as if made with the new ones."""
    from types import SimpleNamespace

    from core.policies import Schedule
    from eval.lm import choubun_config
    from eval.lm.resume_key import prediction_settings, read_predictions

    args = SimpleNamespace(model="smollm2", benchmark="choubun", data_dir=str(tmp_path), max_length=None)
    settings = prediction_settings(args, "full", None, None, Schedule(512))
    assert settings["choubun_templates"] == choubun_config.TEMPLATES_VERSION
    old = {key: value for key, value in settings.items() if key != "choubun_templates"}
    path = tmp_path / "wiki_qa.jsonl"
    rows = [{"id": "a", "prediction": "東京", "cache_fraction": 1.0, "seconds": 0.1, "settings": old},
            {"id": "b", "prediction": "東京", "cache_fraction": 1.0, "seconds": 0.1, "settings": settings}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert list(read_predictions(path, settings)) == ["b"]
    longbench = prediction_settings(SimpleNamespace(**{**vars(args), "benchmark": "longbench"}), "full", None, None,
                                    Schedule(512))
    assert "choubun_templates" not in longbench


def _longbench_row(context: str, answers) -> str:
    return json.dumps({"input": "Which type?", "context": context, "answers": answers, "length": 10,
                       "dataset": "trec", "language": "en", "all_classes": ["A", "B"], "_id": "item-1"}) + "\n"


def test_an_item_edited_in_place_under_the_same_id_is_answered_again(tmp_path, fake_lm):
    """A prediction records a hash of what it answered (prompt and gold answers): editing the data file in
    place under the same _id invalidates it; the unchanged file reuses it."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "trec.jsonl").write_text(_longbench_row("first context", ["A"]))
    argv = ["--benchmark", "longbench", "--data-dir", str(data), "--tasks", "trec", "--policies", "full",
            "--threads", "1", "--out-dir", str(tmp_path / "run")]
    assert main(argv) == 0 and main(argv) == 0
    assert len(fake_lm) == 1
    (data / "trec.jsonl").write_text(_longbench_row("another context", ["A"]))  # same _id, new prompt
    assert main(argv) == 0
    (data / "trec.jsonl").write_text(_longbench_row("another context", ["B"]))  # same prompt, new gold answer
    assert main(argv) == 0
    assert len(fake_lm) == 3
    rows = [json.loads(line) for line in (tmp_path / "run" / "preds" / "full" / "trec.jsonl").read_text().splitlines()]
    assert len({r["settings"]["item_sha256"] for r in rows}) == 3


def test_a_row_stored_before_item_hashes_is_answered_again(tmp_path, fake_lm):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 0
    path = out / "preds" / "full" / "passkey.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        del r["settings"]["item_sha256"]  # as an older version stored them
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 0
    assert len(fake_lm) == 4


@pytest.mark.parametrize("field, value", [("prediction", 12345), ("cache_fraction", "abc"), ("cache_fraction", 7.0),
                                          ("seconds", None), ("settings", [1])])
def test_a_stored_row_of_the_wrong_type_is_named_before_the_model_loads(tmp_path, fake_lm, capsys, field, value):
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 0
    path = out / "preds" / "full" / "passkey.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1][field] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls = len(fake_lm)
    capsys.readouterr()
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: field '{field}' must be" in err and err.count("\n") == 1
    assert len(fake_lm) == calls


def test_a_second_run_on_a_locked_folder_is_refused_and_cuts_no_line_being_written(tmp_path, fake_lm, capsys):
    """The check of stored rows is made before the lock: it must leave a half-written last line alone."""
    from core.lock import FolderLock

    out = tmp_path / "run"
    assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 0
    path = out / "preds" / "full" / "passkey.jsonl"
    torn = path.read_bytes() + b'{"id": "passkey-200-0-'  # the first run is writing this row now
    path.write_bytes(torn)
    capsys.readouterr()
    with FolderLock(out):
        assert main(BASE + ["--policies", "full", "--out-dir", str(out)]) == 2
    assert "output folder is in use by process" in capsys.readouterr().err
    assert path.read_bytes() == torn and len(fake_lm) == 2


def test_the_attention_path_is_recorded_and_rows_from_before_it_count_as_exact(tmp_path, fake_lm):
    """A policy that reads attention keeps its rows per path: `exact: false` on the default path, nothing on the
    exact one, as every row stored before the field existed (made on the exact path, reused by --exact only).
    A policy that reads no attention (l2) runs the same on both paths: its rows serve both."""
    out = tmp_path / "run"
    assert main(BASE + ["--policies", "h2o,l2", "--exact", "--out-dir", str(out)]) == 0
    assert fake_lm.exact == [True] * 4 and _results(out)["exact"] is True
    h2o = out / "preds" / "h2o" / "passkey.jsonl"
    assert all("exact" not in json.loads(line)["settings"] for line in h2o.read_text().splitlines())
    assert main(BASE + ["--policies", "h2o,l2", "--out-dir", str(out)]) == 0  # the default path
    assert [name for name, _ in fake_lm][4:] == ["h2o", "h2o"] and fake_lm.exact[4:] == [False, False]
    assert _results(out)["exact"] is False
    rows = [json.loads(line) for line in h2o.read_text().splitlines()]
    assert [r["settings"].get("exact") for r in rows] == [None, None, False, False]
    assert main(BASE + ["--policies", "h2o,l2", "--exact", "--out-dir", str(out)]) == 0
    assert main(BASE + ["--policies", "h2o,l2", "--out-dir", str(out)]) == 0
    assert len(fake_lm) == 6, "each path's rows are reused by a run on that path"
