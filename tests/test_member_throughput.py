"""bench.member_throughput: which paths it measures and how it compares their rankings of members."""
import math

import pytest

from bench.member_throughput import parse_paths, ranking, spearman
from core.errors import UserError


def test_paths_default_exact_and_dtype():
    paths = parse_paths("default,default@bfloat16", "float32")
    assert paths == {"default": (False, "float32"), "default@bfloat16": (False, "bfloat16"),
                     "exact": (True, "float32")}  # every speed is relative to the exact path, always measured


def test_paths_refused_in_one_line():
    with pytest.raises(UserError, match="--paths fast"):
        parse_paths("fast", "float32")
    with pytest.raises(UserError, match="unknown dtype 'float8'"):
        parse_paths("default@float8", "float32")


def test_ranking_and_spearman():
    assert ranking([0.1, 0.3, 0.2]) == [1, 2, 0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(math.sqrt(3) / 2)  # average ranks for the tie
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
