"""Answer extraction and scoring follow the official LongVideoBench and MLVU rules."""
import random

import pytest

from eval.video import longvideobench as lvb
from eval.video import mlvu
from eval.video.choices import lvb_extract, mlvu_extract, mlvu_is_correct


def test_lvb_first_capital_letter_after_answer_phrases():
    assert lvb_extract("B", 4) == ("B", True)
    assert lvb_extract("The best answer is C.", 4) == ("C", True)
    assert lvb_extract("The answer is (D)", 5) == ("D", True)
    assert lvb_extract("D. A book", 4) == ("D", True)  # not A
    assert lvb_extract("Best option: E", 5) == ("E", True)
    # A capital A-E anywhere counts (the rule is a plain regex search).
    assert lvb_extract("Clearly the man", 4) == ("C", True)


def test_lvb_unparsable_reply_gets_a_seeded_random_choice():
    a = lvb_extract("i do not know", 4, random.Random(3))
    b = lvb_extract("i do not know", 4, random.Random(3))
    assert a == b and a[1] is False and a[0] in "ABCD"
    long_reply = "there is no way to tell which one of these it is from the video at all"
    assert lvb_extract(long_reply, 5, random.Random(0))[1] is False


def test_mlvu_option_is_text_before_first_parenthesis():
    assert mlvu_extract("A) red") == "A"
    assert mlvu_extract(" B ") == "B"
    assert mlvu_extract("C) x) y") == "C"
    assert mlvu_is_correct("A) red", "A")
    assert mlvu_is_correct("A", "A")
    assert not mlvu_is_correct("(A) red", "A")  # the official check is exact
    assert not mlvu_is_correct("B) blue", "A")
    assert not mlvu_is_correct("A red", "A")


def _mlvu_row(task, reply, answer="A", missing=False):
    item = mlvu.MLVUItem(task, 0, "v.mp4", "q", ["x", "y", "z", "w"], "x", answer, None, None, {})
    return mlvu.score(item, None if missing else reply)


def test_mlvu_m_avg_is_the_mean_of_task_accuracies():
    rows = [_mlvu_row("a", "A)"), _mlvu_row("a", "B)"), _mlvu_row("a", "A)"), _mlvu_row("a", "A)"),
            _mlvu_row("b", "C)"), _mlvu_row("b", None, missing=True)]
    s = mlvu.summarize(rows)
    assert s["per_task"]["a"]["acc"] == 0.75
    assert s["per_task"]["b"] == {"num": 2, "num_missing": 1, "acc": 0.0, "correct": [False, False],  # missing: wrong
                                  "acc_answered": 0.0}
    assert s["m_avg"] == (0.75 + 0.0) / 2
    assert s["num_missing"] == 1


def test_a_task_whose_videos_are_all_missing_is_wrong_in_its_cell_and_in_m_avg():
    rows = [_mlvu_row("a", "A)"), _mlvu_row("a", "A)"), _mlvu_row("b", None, missing=True),
            _mlvu_row("b", None, missing=True), _mlvu_row("c", "A)"), _mlvu_row("c", None, missing=True)]
    s = mlvu.summarize(rows)
    assert [s["per_task"][t]["acc"] for t in "abc"] == [1.0, 0.0, 0.5]
    assert s["m_avg"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)  # every task, the cells' mean
    assert s["per_task"]["c"]["acc_answered"] == 1.0 and s["per_task"]["b"]["acc_answered"] is None
    assert "acc_answered" not in s["per_task"]["a"]
    assert mlvu.missing_note({"full": s}) == ["full: missing or unreadable videos, counted wrong: b 2 of 2, c 1 of 2"]


def test_lvb_summary_groups_and_counts_missing():
    def item(i, group, cat, answer):
        return lvb.LVBItem(str(i), "q", ["a", "b", "c", "d"], answer, 10.0, group, cat, None, None, 0.0, {})

    rng = random.Random(0)
    rows = [lvb.score(item(0, "15", "S2E", "A"), "A", rng),
            lvb.score(item(1, "15", "T2A", "B"), "The answer is C", rng),
            lvb.score(item(2, "600", "S2E", "D"), "D.", rng),
            lvb.score(item(3, "600", "S2E", "D"), None, rng)]
    s = lvb.summarize(rows)
    assert (s["num"], s["num_missing"], s["missing_videos"]) == (4, 1, ["3"])
    assert abs(s["acc"] - 2 / 3) < 1e-9 and s["acc_missing_as_wrong"] == 0.5
    assert s["by_duration_group"] == {"15": {"num": 2, "acc": 0.5}, "600": {"num": 1, "acc": 1.0}}
    assert s["by_question_category"]["S2E"] == {"num": 2, "acc": 1.0}


def test_words_format_takes_the_option_the_reply_starts_with_and_nothing_else():
    item = mlvu.MLVUItem("count", 0, "v.mp4", "How many?", ["1", "2", "10", "4"], "10", "C", None, None, {})
    assert mlvu.score(item, " 10", "words")["correct"]
    assert mlvu.score(item, "10 times.", "words")["pred"] == "C"  # the longest option the reply starts with
    assert mlvu.score(item, " 1.", "words")["pred"] == "A"
    assert mlvu.score(item, " 100", "words")["pred"] is None  # no option is a whole word of it: wrong
    colours = mlvu.MLVUItem("needle", 0, "v.mp4", "What colour?", ["red", "green"], "green", "B", None, None, {})
    assert mlvu.score(colours, " Green circle", "words")["correct"]
    assert not mlvu.score(colours, " reddish", "words")["correct"]
    assert not mlvu.score(colours, " The green one", "words")["correct"]  # the reply must start with the option
    assert not mlvu.score(colours, "B", "words")["correct"]  # a letter is not an answer in this format
