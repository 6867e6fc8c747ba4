"""`python -m eval.transfer`: one checkpoint on language, control and video in one report."""
