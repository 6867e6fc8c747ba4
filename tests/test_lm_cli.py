import json

import pytest

from eval.lm.__main__ import main


def test_score_writes_json_and_prints_table(tmp_path, capsys):
    pred = tmp_path / "preds"
    pred.mkdir()
    (pred / "passage_count.jsonl").write_text(
        json.dumps({"pred": "3", "answers": ["3"], "all_classes": None, "length": 10}) + "\n"
        + json.dumps({"pred": "4", "answers": ["3"], "all_classes": None, "length": 10}) + "\n")
    out = tmp_path / "scores.json"
    assert main(["score", "--benchmark", "longbench", str(pred), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"passage_count": 50.0}
    assert "passage_count" in capsys.readouterr().out


def test_score_choubun(tmp_path):
    pred = tmp_path / "preds"
    pred.mkdir()
    (pred / "wiki_qa.jsonl").write_text(json.dumps({"pred": "東京です", "answers": ["東京"], "all_classes": None}) + "\n")
    out = tmp_path / "s.json"
    main(["score", "--benchmark", "choubun", str(pred), "--out", str(out)])
    score = json.loads(out.read_text())["wiki_qa"]
    assert 0 < score < 100  # 東京 matches, です does not


def test_bad_prediction_line_names_file_and_line(tmp_path, capsys):
    pred = tmp_path / "preds"
    pred.mkdir()
    (pred / "trec.jsonl").write_text(json.dumps({"answers": ["A"]}) + "\n")
    assert main(["score", "--benchmark", "longbench", str(pred), "--out", str(tmp_path / "x.json")]) == 2
    assert f"error: {pred / 'trec.jsonl'}:1: missing field 'pred'" in capsys.readouterr().err


def test_score_with_a_missing_task_file_does_not_average_silently(tmp_path, capsys):
    pred = tmp_path / "preds"
    pred.mkdir()
    (pred / "passage_count.jsonl").write_text(json.dumps({"pred": "3", "answers": ["3"]}) + "\n")
    out = tmp_path / "s.json"
    assert main(["score", "--benchmark", "longbench", str(pred), "--out", str(out),
                 "--tasks", "passage_count,trec"]) == 2
    assert f"no prediction file for task(s) trec (expected {pred / 'trec.jsonl'})" in capsys.readouterr().err
    assert not out.exists()
    # Without --tasks, the average says how many tasks it covers and which have no file.
    assert main(["score", "--benchmark", "longbench", str(pred), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "over 1 of 21 tasks; no file for" in captured.out and "trec" in captured.out
    assert "warning:" in captured.err


def test_score_infinitebench_requires_the_named_tasks(tmp_path, capsys):
    pred = tmp_path / "model"
    pred.mkdir()
    (pred / "preds_passkey.jsonl").write_text(json.dumps({"prediction": "12", "ground_truth": "12"}) + "\n")
    assert main(["score", "--benchmark", "infinitebench", str(pred), "--out", str(tmp_path / "s.json"),
                 "--tasks", "passkey,kv_retrieval"]) == 2
    assert "preds_kv_retrieval.jsonl" in capsys.readouterr().err
    assert main(["score", "--benchmark", "infinitebench", str(pred), "--out", str(tmp_path / "s.json"),
                 "--tasks", "passkey"]) == 0
