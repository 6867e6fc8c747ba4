"""LongBench v1 per-task metrics and the task scorer, re-implemented after THUDM/LongBench eval.py/metrics.py."""
from __future__ import annotations

import re
import warnings
from typing import Callable, Sequence

from eval.lm.rouge_l import LONGBENCH_BASE_DEPTH, rouge_l_f
from eval.lm.text_norm import normalize_answer, normalize_cjk_answer, token_f1

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # fuzzywuzzy warns that it uses difflib: that is what the official scores used
    from fuzzywuzzy import fuzz

_NUMBERS = re.compile(r"\d+")


def _jieba_cut(text: str) -> list[str]:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return list(jieba.cut(text, cut_all=False))


def qa_f1(prediction: str, answer: str, **_) -> float:
    return token_f1(normalize_answer(prediction).split(), normalize_answer(answer).split())


def qa_f1_zh(prediction: str, answer: str, **_) -> float:
    def tokens(text):
        return [t for t in (normalize_cjk_answer(w) for w in _jieba_cut(text)) if t]

    return token_f1(tokens(prediction), tokens(answer))


def rouge(prediction: str, answer: str, **_) -> float:
    return rouge_l_f(prediction, answer)


def rouge_zh(prediction: str, answer: str, **_) -> float:
    # one frame deeper than `rouge` in the official script (rouge_zh_score calls rouge_score)
    return rouge_l_f(" ".join(_jieba_cut(prediction)), " ".join(_jieba_cut(answer)), LONGBENCH_BASE_DEPTH + 1)


def _share_of_numbers_equal(prediction: str, target: str) -> float:
    """Fraction of the integers in the prediction that equal `target` (0 when there are none)."""
    numbers = _NUMBERS.findall(prediction)
    if not numbers:
        return 0.0
    return sum(1 for x in numbers if x == str(target)) / len(numbers)


def count(prediction: str, answer: str, **_) -> float:
    return _share_of_numbers_equal(prediction, answer)


def retrieval(prediction: str, answer: str, **_) -> float:
    return _share_of_numbers_equal(prediction, re.findall(r"Paragraph (\d+)", answer)[0])


def retrieval_zh(prediction: str, answer: str, **_) -> float:
    return _share_of_numbers_equal(prediction, re.findall(r"段落(\d+)", answer)[0])


def code_sim(prediction: str, answer: str, **_) -> float:
    """fuzz.ratio between the answer and the first prediction line that is not a comment or a code fence."""
    first = ""
    for line in prediction.lstrip("\n").split("\n"):
        if "`" not in line and "#" not in line and "//" not in line:
            first = line
            break
    return fuzz.ratio(first, answer) / 100


def classification(prediction: str, answer: str, all_classes: Sequence[str] = (), **_) -> float:
    """1/k when the answer is among the k class names found in the prediction.

    Names that are strict substrings of the answer are dropped, with the official loop's quirk kept:
    it removes items from the list it iterates over, so the item after each removed one is not checked.
    """
    found = [c for c in all_classes if c in prediction]
    position = 0
    while position < len(found):
        name = found[position]
        position += 1
        if name in answer and name != answer:
            found.remove(name)  # `position` is not rewound, so the next item is skipped, as in the original
    return 1.0 / len(found) if answer in found else 0.0


DATASET2METRIC: dict[str, Callable[..., float]] = {
    "narrativeqa": qa_f1,
    "qasper": qa_f1,
    "multifieldqa_en": qa_f1,
    "multifieldqa_zh": qa_f1_zh,
    "hotpotqa": qa_f1,
    "2wikimqa": qa_f1,
    "musique": qa_f1,
    "dureader": rouge_zh,
    "gov_report": rouge,
    "qmsum": rouge,
    "multi_news": rouge,
    "vcsum": rouge_zh,
    "trec": classification,
    "triviaqa": qa_f1,
    "samsum": rouge,
    "lsht": classification,
    "passage_retrieval_en": retrieval,
    "passage_count": count,
    "passage_retrieval_zh": retrieval_zh,
    "lcc": code_sim,
    "repobench-p": code_sim,
}
TASKS = tuple(DATASET2METRIC)
FIRST_LINE_TASKS = frozenset({"trec", "triviaqa", "samsum", "lsht"})


def first_line(prediction: str) -> str:
    return prediction.lstrip("\n").split("\n")[0]


def sample_score(task: str, prediction: str, answers: Sequence[str], all_classes: Sequence[str] | None,
                 metric: Callable[..., float] | None = None) -> float:
    """Max over the answers of the task's metric (after the first-line rule where it applies)."""
    metric = metric or DATASET2METRIC[task]
    if task in FIRST_LINE_TASKS:
        prediction = first_line(prediction)
    best = 0.0
    for answer in answers:
        best = max(best, metric(prediction, answer, all_classes=all_classes or ()))
    return best


def task_score(task: str, predictions: Sequence[str], answers: Sequence[Sequence[str]],
               all_classes: Sequence[str] | None) -> float:
    """100 x mean of per-sample scores, rounded to 2 decimals as in the official result.json."""
    if not predictions:
        raise ValueError(f"{task}: no predictions to score")
    total = sum(sample_score(task, p, a, all_classes) for p, a in zip(predictions, answers))
    return round(100 * total / len(predictions), 2)
