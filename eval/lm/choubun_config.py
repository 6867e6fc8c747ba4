"""ChouBun (Japanese long-context benchmark) task configuration: prompts and max new tokens.

Source: the prompt templates below were written for this project (Japanese instructions of our own wording;
the ChouBun data is Apache-2.0, the reference repository's own templates carry no licence and are not used);
the max new tokens per task are the benchmark's settings (64 for question answering, 128 for summaries).
Results made with the earlier templates, the reference's text, are not comparable: `TEMPLATES_VERSION` is
part of every stored ChouBun prediction's settings, so a resumed run never reuses such rows.
"""

TEMPLATES_VERSION = "namm-x-1"  # change whenever a template's text changes

_QA = ("次の資料を読み、そのあとの問いに答えなさい。答えは資料の中の語句をそのまま抜き出し、"
       "余計な説明を付けずに書くこと。\n\n【資料】\n{context}\n\n【問い】\n{input}\n\n【答え】\n")
_SUMMARY = ("次の資料の要点をまとめなさい。資料全体を通した主張や傾向、そこから読み取れることが分かるように、"
            "短く簡潔に書くこと。\n\n【資料】\n{context}\n\n【要約】\n")

DATASET2PROMPT = {
    'wiki_qa': _QA,
    'edinet_qa': _QA,
    'corp_sec_qa': _QA,
    'corp_sec_sum': _SUMMARY,
}

DATASET2MAXLEN = {
    'wiki_qa': 64,
    'edinet_qa': 64,
    'corp_sec_qa': 64,
    'corp_sec_sum': 128,
}
