"""Answer normalisation and bag-of-tokens F1 shared by the LongBench, InfiniteBench and ChouBun metrics."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_EN_PUNCT = frozenset(string.punctuation)
# Full-width and CJK punctuation removed by the official Chinese/Japanese normalisers (plus ASCII punctuation).
_CJK_PUNCT = frozenset(
    string.punctuation
    + "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation and English articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _EN_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_cjk_answer(text: str) -> str:
    """Lower case, drop ASCII and CJK punctuation, remove all whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _CJK_PUNCT)
    return "".join(text.split())


def token_f1(prediction: Sequence[str], reference: Sequence[str]) -> float:
    common = Counter(prediction) & Counter(reference)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction)
    recall = same / len(reference)
    return 2 * precision * recall / (precision + recall)
