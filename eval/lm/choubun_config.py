"""ChouBun (Japanese long-context benchmark) task configuration: prompts and max new tokens.

The strings are the published ChouBun prompts (SakanaAI/evo-memory, ChouBun/config), verbatim.
"""

DATASET2PROMPT = {
    'wiki_qa': '以下の文書を注意深く読み、続く質問に答えてください。回答は必ず文書内の連続した文字列（テキストスパン）から抽出してください。\n### 文書 ###\n{context}\n### 質問 ###\n{input}\n### 回答 ###\n',
    'edinet_qa': '以下の文書を注意深く読み、続く質問に答えてください。回答は必ず文書内の連続した文字列（テキストスパン）から抽出してください。\n### 文書 ###\n{context}\n### 質問 ###\n{input}\n### 回答 ###\n',
    'corp_sec_qa': '以下の文書を注意深く読み、続く質問に答えてください。回答は必ず文書内の連続した文字列（テキストスパン）から抽出してください。### 文書 ###\n{context}\n### 質問 ###\n{input}\n### 回答 ###\n',
    'corp_sec_sum': '以下の文書を要約してください。要約は短く簡潔にしてください。また、文書の全体的な考え方、傾向、洞察を反映させてください。\n### 文書 ###\n{context}\n### 要約 ###\n',
}

DATASET2MAXLEN = {
    'wiki_qa': 64,
    'edinet_qa': 64,
    'corp_sec_qa': 64,
    'corp_sec_sum': 128,
}
