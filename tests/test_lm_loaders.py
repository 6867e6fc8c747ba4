import json

import pytest

from eval.lm import longbench_config
from eval.lm.jsonl import DataError
from eval.lm.loaders import load_choubun, load_infinitebench, load_longbench
from eval.lm.truncation import middle_truncate


class WordTokenizer:
    """Whitespace tokenizer with a BOS id, enough to check truncation the way the official code does it."""

    BOS = 0

    def __init__(self):
        self.vocab, self.words = {"<s>": 0}, ["<s>"]

    def __call__(self, text, truncation=False, **_):
        ids = [self.BOS]
        for word in text.split():
            if word not in self.vocab:
                self.vocab[word] = len(self.words)
                self.words.append(word)
            ids.append(self.vocab[word])
        return type("Encoding", (), {"input_ids": ids})()

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(self.words[i] for i in ids if not (skip_special_tokens and i == self.BOS))


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def _lb_record(**kw):
    record = {"input": "Who?", "context": "Alice met Bob.", "answers": ["Bob"], "length": 3, "dataset": "hotpotqa",
              "language": "en", "all_classes": None, "_id": "x1"}
    record.update(kw)
    return record


def test_longbench_prompt_and_fields(tmp_path):
    _write(tmp_path / "hotpotqa.jsonl", [_lb_record()])
    [sample] = load_longbench(tmp_path, "hotpotqa")
    assert sample.prompt == longbench_config.DATASET2PROMPT["hotpotqa"].format(context="Alice met Bob.", input="Who?")
    assert sample.answers == ["Bob"] and sample.max_new_tokens == 32 and sample.use_chat
    _write(tmp_path / "trec.jsonl", [_lb_record(dataset="trec", all_classes=["A", "B"])])
    assert not load_longbench(tmp_path, "trec")[0].use_chat


def test_middle_truncation_keeps_both_ends(tmp_path):
    context = " ".join(f"w{i}" for i in range(100))
    _write(tmp_path / "hotpotqa.jsonl", [_lb_record(context=context)])
    tok = WordTokenizer()
    [sample] = load_longbench(tmp_path, "hotpotqa", tok, max_length=20)
    full = longbench_config.DATASET2PROMPT["hotpotqa"].format(context=context, input="Who?").split()
    # BOS + 9 first words | last 10 words, halves decoded separately and concatenated
    assert sample.prompt == " ".join(full[:9]) + " ".join(full[-10:])
    assert middle_truncate("a b c", tok, 20) == "a b c"
    assert middle_truncate(" ".join(full), tok, 20, joint_decode=True) == " ".join(full[:9] + full[-10:])


def test_infinitebench_prompts_and_answers(tmp_path):
    _write(tmp_path / "longbook_choice_eng.jsonl", [
        {"id": 0, "context": "A book.", "input": "Where?", "answer": ["Snowfield"],
         "options": ["Walking Georgie", "Hall Farm", "Snowfield", "At the Mauras"]}])
    [sample] = load_infinitebench(tmp_path, "longbook_choice_eng")
    assert sample.answers == ["Snowfield", "C"]
    assert "A. Walking Georgie\nB. Hall Farm" in sample.prompt and sample.prompt.endswith("The letter of the correct answer is")
    _write(tmp_path / "code_run.jsonl", [
        {"id": 1, "context": "def func_1(x): ...", "input": "What is func_1(-3)?", "answer": [4], "options": []}])
    [sample] = load_infinitebench(tmp_path, "code_run", template_set="chat")
    assert "named func_1." in sample.prompt and "return value of func_1(-3)." in sample.prompt
    _write(tmp_path / "math_find.jsonl", [
        {"id": 2, "context": "[1, 5, 3]", "input": "The largest number of the list is", "answer": [5], "options": []}])
    [sample] = load_infinitebench(tmp_path, "math_find")
    assert sample.prompt.startswith("What is the largest number in the following list?\n\n[1, 5, 3]")


def test_choubun_prompt(tmp_path):
    _write(tmp_path / "wiki_qa.jsonl", [_lb_record(context="東京は日本の首都です。", input="日本の首都は？", answers=["東京"])])
    [sample] = load_choubun(tmp_path, "wiki_qa")
    assert "【資料】\n東京は日本の首都です。\n\n【問い】\n日本の首都は？\n\n【答え】\n" in sample.prompt
    assert sample.prompt.endswith("【答え】\n") and sample.max_new_tokens == 64


def test_choubun_templates_are_the_projects_own():
    """The templates are written by the project (the reference repository's carry no licence): each keeps
    the data's slots and the benchmark's max new tokens, and none uses the reference's section markers."""
    from eval.lm import choubun_config

    prompts, maxlen = choubun_config.DATASET2PROMPT, choubun_config.DATASET2MAXLEN
    assert set(prompts) == set(maxlen) == {"wiki_qa", "edinet_qa", "corp_sec_qa", "corp_sec_sum"}
    assert maxlen == {"wiki_qa": 64, "edinet_qa": 64, "corp_sec_qa": 64, "corp_sec_sum": 128}
    for task, template in prompts.items():
        assert template.count("{context}") == 1 and template.count("{input}") == (task != "corp_sec_sum")
        assert "###" not in template and "テキストスパン" not in template
    assert "Source:" in choubun_config.__doc__ and "written for this project" in choubun_config.__doc__


def test_errors_name_file_line_and_field(tmp_path):
    with pytest.raises(DataError, match=r"hotpotqa\.jsonl: file not found"):
        load_longbench(tmp_path, "hotpotqa")
    bad = _lb_record()
    del bad["answers"]
    _write(tmp_path / "hotpotqa.jsonl", [_lb_record(), bad])
    with pytest.raises(DataError, match=r"hotpotqa\.jsonl:2: missing field 'answers'"):
        load_longbench(tmp_path, "hotpotqa")
    (tmp_path / "qasper.jsonl").write_text(json.dumps(_lb_record()) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"qasper\.jsonl:3: not valid JSON"):
        load_longbench(tmp_path, "qasper")
    _write(tmp_path / "passkey.jsonl", [{"id": 0, "context": "x", "input": "y", "answer": ["1"]}])
    with pytest.raises(DataError, match=r"passkey\.jsonl:1: missing field 'options'"):
        load_infinitebench(tmp_path, "passkey")
