"""rougeLsum F-measure as Hugging Face `evaluate`'s "rouge" metric computes it (google rouge_score, no stemmer).

Sentences are the newline-separated lines; tokens are lower-cased runs of [a-z0-9]. The score is the
summary-level LCS of ROUGE (Lin 2004, section 3.2) with the 1.5.5 rule that a token is counted at most
as many times as it occurs in both texts. With several references the best F-measure is taken.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def tokenize(text: str) -> list[str]:
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


def sentences(text: str) -> list[list[str]]:
    return [tokenize(line) for line in text.split("\n") if len(line)]


def _lcs_table(ref: np.ndarray, can: np.ndarray) -> np.ndarray:
    """table[i, j] = LCS length of ref[:i] and can[:j]; each row is a running max of its candidates."""
    table = np.zeros((len(ref) + 1, len(can) + 1), dtype=np.int32)
    for i in range(1, len(ref) + 1):
        previous = table[i - 1]
        candidates = np.where(can == ref[i - 1], previous[:-1] + 1, previous[1:])
        table[i, 1:] = np.maximum.accumulate(candidates)
    return table


def lcs_indices(ref: np.ndarray, can: np.ndarray) -> list[int]:
    """Indices into `ref` of one LCS, chosen by the same backtracking order as rouge_score."""
    if len(ref) == 0 or len(can) == 0:
        return []
    table = _lcs_table(ref, can).tolist()
    i, j = len(ref), len(can)
    picked = []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            picked.append(i - 1)
            i -= 1
            j -= 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    picked.reverse()
    return picked


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def summary_level_lcs_f(reference: list[list[str]], candidate: list[list[str]]) -> float:
    m = sum(map(len, reference))
    n = sum(map(len, candidate))
    if not reference or not candidate or not m or not n:
        return 0.0
    vocab: dict[str, int] = {}
    encode = lambda sent: np.array([vocab.setdefault(t, len(vocab)) for t in sent], dtype=np.int64)  # noqa: E731
    ref_ids = [encode(s) for s in reference]
    can_ids = [encode(s) for s in candidate]
    ref_left = Counter(t for s in reference for t in s)
    can_left = Counter(t for s in candidate for t in s)
    hits = 0
    for sent, ids in zip(reference, ref_ids):
        union = sorted(set().union(*(lcs_indices(ids, c) for c in can_ids)))
        for token in (sent[k] for k in union):
            if can_left[token] > 0 and ref_left[token] > 0:
                hits += 1
                can_left[token] -= 1
                ref_left[token] -= 1
    return _fmeasure(hits / n, hits / m)


def rouge_lsum(prediction: str, references: str | Sequence[str]) -> float:
    refs = [references] if isinstance(references, str) else list(references)
    candidate = sentences(prediction)
    return max(summary_level_lcs_f(sentences(r), candidate) for r in refs)
