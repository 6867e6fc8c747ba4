"""ChouBun metrics (after SakanaAI/evo-memory choubun_metrics.py / utils_longbench.py).

Japanese text is cut into words with fugashi (MeCab, unidic-lite dictionary, `-Owakati`).
wiki_qa, edinet_qa and corp_sec_qa: token F1 of the normalised words; corp_sec_sum: ROUGE-L of the
space-joined words (the `rouge` package's rouge-l, via eval.lm.rouge_l).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

from eval.lm.rouge_l import rouge_l_f
from eval.lm.text_norm import normalize_cjk_answer, token_f1

# Frames below the LCS readback when the evo-memory scorer calls the package (one more than LongBench's
# rouge_zh: rouge_ja_score -> rouge_score -> package); the exact depth of that training-loop call is unknown.
CHOUBUN_BASE_DEPTH = 10


@lru_cache(maxsize=1)
def _tagger():
    from fugashi import Tagger

    return Tagger("-Owakati")


def words(text: str) -> list[str]:
    return [w.surface for w in _tagger()(text)]


def qa_f1_ja(prediction: str, answer: str, **_) -> float:
    def tokens(text):
        return [t for t in (normalize_cjk_answer(w) for w in words(text)) if t]

    return token_f1(tokens(prediction), tokens(answer))


def rouge_ja(prediction: str, answer: str, **_) -> float:
    return rouge_l_f(" ".join(words(prediction)), " ".join(words(answer)), base_depth=CHOUBUN_BASE_DEPTH)


DATASET2METRIC: dict[str, Callable[..., float]] = {
    "wiki_qa": qa_f1_ja,
    "edinet_qa": qa_f1_ja,
    "corp_sec_qa": qa_f1_ja,
    "corp_sec_sum": rouge_ja,
}
TASKS = tuple(DATASET2METRIC)


def task_score(task: str, predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> float:
    """100 x mean over samples of the max over answers, rounded to 2 decimals like LongBench."""
    if not predictions:
        raise ValueError(f"{task}: no predictions to score")
    metric = DATASET2METRIC[task]
    total = sum(max([metric(p, a) for a in answers_] + [0.0]) for p, answers_ in zip(predictions, answers))
    return round(100 * total / len(predictions), 2)
