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
