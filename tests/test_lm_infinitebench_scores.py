import re

import pytest

from eval.lm import infinitebench_metrics as ib
from eval.lm.rouge_lsum import rouge_lsum
from eval.lm.score_cli import score_dir

TABLE_ROWS = {
    "Retrieve.PassKey": "passkey", "Retrieve.Number": "number_string", "Retrieve.KV": "kv_retrieval",
    "En.Sum": "longbook_sum_eng", "En.QA": "longbook_qa_eng", "En.MC": "longbook_choice_eng",
    "En.Dia": "longdialogue_qa_eng", "Zh.QA": "longbook_qa_chn", "Code.Debug": "code_debug",
    "Code.Run": "code_run", "Math.Calc": "math_calc", "Math.Find": "math_find",
}
TABLE_COLUMNS = {"gpt4": 1, "kimi": 3}


def _table(path):
    """{model: {task: percent}} for the cells that hold a number (not "< 5%")."""
    out = {model: {} for model in TABLE_COLUMNS}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] not in TABLE_ROWS:
            continue
        for model, column in TABLE_COLUMNS.items():
            match = re.fullmatch(r"([\d.]+)%", cells[column])
            if match:
                out[model][TABLE_ROWS[cells[0]]] = float(match.group(1))
    return out


@pytest.mark.parametrize("model", sorted(TABLE_COLUMNS))
def test_fixture_scores_reproduce_the_readme_table(fixtures_dir, model):
    folder = fixtures_dir / "infinitebench_pred"
    expected = _table(folder / "README_table.md")[model]
    assert len(expected) >= 10
    scores = score_dir("infinitebench", folder / model)
    for task, value in expected.items():
        assert scores[task] == pytest.approx(value, abs=0.01), task


def test_labels_stored_as_python_literals_are_parsed():
    assert ib.parse_label("['ACE', 'ACE ROTHSTEIN']") == ["ACE", "ACE ROTHSTEIN"]
    assert ib.parse_label("c14cb8ba") == "c14cb8ba"
    assert ib.longdialogue_qa_eng("I think it is Ace.", ib.parse_label("['ACE', 'ACE ROTHSTEIN']")) == 1.0
    assert ib.longbook_choice_eng("B. Hall Farm", ["Hall Farm", "B"]) == 1.0


def test_rouge_lsum_known_values():
    assert rouge_lsum("the cat sat", "the cat sat") == pytest.approx(1.0)
    # summary-level LCS over newline-separated sentences: 4 of 6 reference tokens, 4 of 5 candidate tokens
    value = rouge_lsum("a b c\nd x", "a b\nc d e f")
    assert value == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))
    assert rouge_lsum("", "abc") == 0.0
    assert rouge_lsum("x y", ["nothing", "x y"]) == pytest.approx(1.0)
