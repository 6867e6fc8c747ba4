"""A word-level tokenizer for the tiny video model (words, numbers and single punctuation marks)."""
from __future__ import annotations

import re
from typing import Iterable

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", "<video>", "<image>")
TOKEN_RE = re.compile(r"<(?:video|image|pad|bos|eos|unk)>|\w+|[^\w\s]")
NO_SPACE_BEFORE = set(")]}.,:;?!")
NO_SPACE_AFTER = set("([{")


def split_words(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


class WordTokenizer:
    def __init__(self, vocab: list[str]):
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"vocab must start with the special tokens {SPECIALS}")
        if len(set(vocab)) != len(vocab):
            raise ValueError("vocab has duplicate entries")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id, self.unk_token_id = 0, 1, 2, 3
        self.video_token, self.image_token = "<video>", "<image>"
        self.video_token_id, self.image_token_id = 4, 5

    @classmethod
    def build(cls, texts: Iterable[str]) -> "WordTokenizer":
        words = sorted({w for t in texts for w in split_words(t)} - set(SPECIALS))
        return cls(list(SPECIALS) + words)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        ids = [self.index.get(w, self.unk_token_id) for w in split_words(text)]
        return [self.bos_token_id] + ids if add_bos else ids

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.index.get(token, self.unk_token_id)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        out = ""
        for i in ids:
            i = int(i)
            if skip_special_tokens and i < len(SPECIALS):
                if i == self.eos_token_id:
                    break
                continue
            w = self.vocab[i] if 0 <= i < len(self.vocab) else "<unk>"
            if out and w not in NO_SPACE_BEFORE and out[-1] not in NO_SPACE_AFTER:
                out += " "
            out += w
        return out
