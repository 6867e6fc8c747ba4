"""Middle truncation of a tokenised prompt: keep the first and last halves, as the official scripts do."""
from __future__ import annotations


def middle_truncate(prompt: str, tokenizer, max_length: int, joint_decode: bool = False) -> str:
    """Return `prompt` unchanged if it has at most `max_length` tokens, else its first and last halves.

    LongBench (pred.py) tokenises with the tokenizer's default special tokens, keeps
    int(max_length / 2) tokens at each end and decodes the halves separately (skipping special
    tokens) before concatenating them; InfiniteBench decodes the kept tokens together
    (`joint_decode=True`).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    ids = list(tokenizer(prompt, truncation=False).input_ids)
    if len(ids) <= max_length:
        return prompt
    half = max_length // 2
    if joint_decode:
        return tokenizer.decode(ids[:half] + ids[-half:], skip_special_tokens=True)
    return tokenizer.decode(ids[:half], skip_special_tokens=True) + tokenizer.decode(ids[-half:], skip_special_tokens=True)
