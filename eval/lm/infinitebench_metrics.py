"""InfiniteBench per-task scorers, re-implemented after OpenBMB/InfiniteBench src/compute_scores.py.

Each scorer takes (prediction, label, model_name) and returns a number in [0, 1]; a task's score is
the mean over its samples. Quirks of the official scorers are kept and noted where they matter.
"""
from __future__ import annotations

import ast
import re
from typing import Any, Callable

from eval.lm.rouge_lsum import rouge_lsum
from eval.lm.text_norm import normalize_answer, normalize_cjk_answer, token_f1


def parse_label(label: Any) -> Any:
    """Labels stored as Python-literal list strings ("['A', 'B']") become lists; others are kept."""
    if isinstance(label, str) and label.startswith("[") and label.endswith("]"):
        try:
            value = ast.literal_eval(label)
        except (ValueError, SyntaxError):
            return label
        if isinstance(value, list):
            return value
    return label


def _first(label):
    return label[0] if isinstance(label, list) else label


def _first_digit_run(prediction: str) -> str:
    for piece in re.split("[^0-9]", prediction):
        if piece != "":
            return piece
    return ""


def _words_without(prediction: str, chars) -> list[str]:
    for c in chars:
        prediction = prediction.replace(c, " ")
    return prediction.split()


_RETRIEVAL_SEPARATORS = ["\n", ":", '"', "'", ".", ",", "?", "!", "{", "}"]


def passkey(prediction, label, model_name="") -> float:
    return float(str(_first(label)) == _first_digit_run(prediction))


number_string = passkey


def kv_retrieval(prediction, label, model_name="") -> float:
    # The official scorer compares a string label; a list label is read as its first element.
    return float(_first(label) in _words_without(prediction, _RETRIEVAL_SEPARATORS))


def code_run(prediction, label, model_name="") -> float:
    words = _words_without(prediction.strip(), ["\n", ".", "`", "'", '"', ":"])
    if not words:
        return 0.0
    try:
        return float(_first(label) == int(words[-1]))
    except ValueError:
        return 0.0


def _squeeze_spaces(text: str) -> str:
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _after_first_prefix(prediction: str, prefixes) -> str | None:
    """The text after the first of `prefixes` found (in list order) and one separator character;
    "" if the prediction ends there, None if no prefix occurs."""
    for prefix in prefixes:
        at = prediction.find(prefix)
        if at != -1:
            return prediction[at + len(prefix) + 1:] if len(prediction) >= at + len(prefix) + 1 else ""
    return None


def code_debug(prediction, label, model_name="") -> float:
    """label = [function name, option letter]."""
    function, letter = label[0], label[1]
    prediction = prediction.strip()
    if prediction[:2] in (f"{letter}.", f"{letter}:"):
        return 1.0
    for c in ["\n", "`", "'", '"', "-", "*", "Option", "option"]:
        prediction = prediction.replace(c, " ")
    prediction = _squeeze_spaces(prediction)
    rest = _after_first_prefix(prediction, ["answer is:", "is:", "answer:", "correct option is:"])
    if rest is None:
        return 0.0
    return float(rest != "" and (rest.startswith(letter) or rest.startswith(function)))


def longbook_choice_eng(prediction, label, model_name="") -> float:
    """label = [option text, option letter]."""
    prediction = prediction.strip()
    if prediction == "":
        return 0.0
    if prediction[0] in "ABCD":
        return float(prediction[0] in label)
    if prediction in label:
        return 1.0
    for c in ["\n", '"', "'", ".", ",", "?", "!", "{", "}"]:
        prediction = prediction.replace(c, " ")
    prediction = _squeeze_spaces(prediction)
    rest = _after_first_prefix(prediction, ["answer is:", "answer:", "answer is", "option is"])
    if rest is not None:
        return float(rest != "" and any(rest.startswith(s) for s in label))
    for word in prediction.split():
        if word in "ABCD":  # substring test, as in the original ("AB" counts)
            return float(word in label)
    return 0.0


def longdialogue_qa_eng(prediction, label, model_name="") -> float:
    # Only the first listed name counts, matched against upper-cased words.
    words = [w.upper() for w in _words_without(prediction.strip(), _RETRIEVAL_SEPARATORS)]
    return float(label[0] in words)


def longbook_qa_eng(prediction, label, model_name="") -> float:
    labels = label if isinstance(label, list) else [label]
    return max([token_f1(normalize_answer(prediction).split(), normalize_answer(x).split()) for x in labels] + [0.0])


def longbook_qa_chn(prediction, label, model_name="") -> float:
    """Character-level F1 after the Chinese normalisation."""
    labels = label if isinstance(label, list) else [label]
    pred = list(normalize_cjk_answer(prediction))
    return max([token_f1(pred, list(normalize_cjk_answer(x))) for x in labels] + [0.0])


def longbook_sum_eng(prediction, label, model_name="") -> float:
    return rouge_lsum(prediction, label)


def math_find(prediction, label, model_name="") -> float:
    label = _first(label)
    found = re.search(r"\d+\.\d+|\d+", prediction)
    if isinstance(label, bool) or not isinstance(label, (int, float)):
        raise TypeError(f"math_find expects an int or float label, got {type(label).__name__}")
    if found is None:
        return 0.0
    if isinstance(label, int):
        try:
            return float(int(found.group(0)) == label)
        except ValueError:  # "12.5" cannot be read as an int: the official scorer crashes here
            return 0.0
    return float(float(found.group(0)) == label)


def math_calc(prediction, label, model_name="") -> float:
    """Share of the expected values matched in order before the first mistake."""
    if isinstance(label[0], list):
        label = label[0]
    numbers = [int(x) for x in re.split("[^0-9]", prediction) if x != ""]
    if model_name == "gpt4":  # GPT-4's prompt made it repeat the first operand
        numbers = numbers[1:]
    correct = 0
    for expected, got in zip(label, numbers):
        if expected != got:
            break
        correct += 1
    return correct / len(label)


SCORERS: dict[str, Callable[..., float]] = {
    "passkey": passkey,
    "number_string": number_string,
    "kv_retrieval": kv_retrieval,
    "longbook_sum_eng": longbook_sum_eng,
    "longbook_choice_eng": longbook_choice_eng,
    "longbook_qa_eng": longbook_qa_eng,
    "longbook_qa_chn": longbook_qa_chn,
    "longdialogue_qa_eng": longdialogue_qa_eng,
    "math_find": math_find,
    "math_calc": math_calc,
    "code_run": code_run,
    "code_debug": code_debug,
}
TASKS = tuple(SCORERS)


def task_score(task: str, predictions, labels, model_name: str = "") -> float:
    """Percent: 100 x mean of the per-sample scores."""
    if not predictions:
        raise ValueError(f"{task}: no predictions to score")
    scorer = SCORERS[task]
    total = sum(scorer(p, parse_label(label), model_name) for p, label in zip(predictions, labels))
    return 100 * total / len(predictions)
