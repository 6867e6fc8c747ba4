import json

import pytest

from eval.lm import longbench_metrics as lb
from eval.lm.rouge_l import rouge_l_f
from eval.lm.score_cli import score_dir


def test_fixture_scores_reproduce_result_json(fixtures_dir, tmp_path):
    pred_dir = fixtures_dir / "longbench_pred" / "llama2-7b-chat-4k"
    expected = json.loads((pred_dir / "result.json").read_text())
    scores = score_dir("longbench", pred_dir)
    assert set(scores) == set(lb.TASKS) == set(expected)
    for task, value in expected.items():
        assert scores[task] == pytest.approx(value, abs=0.01), task


def test_classification_keeps_the_official_list_quirk():
    # "Other" is a substring of the answer and is removed; the item after it is then skipped.
    classes = ["Other", "Other location", "City"]
    assert lb.classification("Other location", "Other location", all_classes=classes) == 1.0
    assert lb.classification("City or Other location", "Other location", all_classes=classes) == 0.5


def test_small_metric_cases():
    assert lb.qa_f1("The Eiffel Tower.", "eiffel tower") == 1.0
    assert lb.retrieval("Paragraph 3", "Paragraph 3") == 1.0
    assert lb.retrieval("Paragraph 3 or 4", "Paragraph 3") == 0.5
    assert lb.count("There are 7 unique paragraphs", "7") == 1.0
    assert lb.code_sim("# comment\nx = 1", "x = 1") == 1.0
    assert lb.sample_score("trec", "Location\nmore", ["Location"], ["Location", "City"]) == 1.0
    assert rouge_l_f("", "a reference") == 0.0


def test_rouge_l_matches_the_rouge_package_on_short_texts():
    from rouge import Rouge

    pairs = [("the cat sat on the mat. it was happy", "a cat sat on a mat. the cat was happy"),
             ("police killed the gunman", "the gunman was shot down by police"),
             ("one two three. four five", "five four. three two one")]
    for hyp, ref in pairs:
        expected = Rouge().get_scores([hyp], [ref], avg=True)["rouge-l"]["f"]
        assert rouge_l_f(hyp, ref) == pytest.approx(expected, abs=1e-12)


def test_rouge_l_reproduces_the_package_recursion_failure():
    # The package reads the LCS back with one Python frame per step; in the official script
    # (9 frames below the first readback call) 990 steps pass and 991 raise, which scores 0.
    def pair(steps):
        ref = "common " + " ".join(f"r{i}" for i in range(10))
        hyp = "common " + " ".join(f"h{i}" for i in range(steps - 11))
        return hyp, ref

    assert rouge_l_f(*pair(990)) > 0
    assert rouge_l_f(*pair(991)) == 0.0
