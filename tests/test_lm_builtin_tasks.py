import re

import pytest

from eval.lm import builtin_tasks as bt


class CharTokenizer:
    """About one token per 4 characters, like the default estimate but through the tokenizer path."""

    def __call__(self, text, add_special_tokens=False, **_):
        return type("Encoding", (), {"input_ids": list(range(max(1, len(text) // 4)))})()


@pytest.mark.parametrize("task", bt.TASKS)
def test_deterministic_sized_and_answer_in_context(task):
    a = bt.make_items(task, 3, 1000, seed=7)
    b = bt.make_items(task, 3, 1000, seed=7)
    c = bt.make_items(task, 3, 1000, seed=8)
    assert a == b and a != c
    count = bt.token_counter(None)
    for item in a:
        assert 800 <= count(bt.render(item, chat=False)) <= 1250, task
        assert item.answers and item.answers[0] in item.prompt
        assert item.chance < 0.5
        assert bt.score_item(item, " " + item.answers[0] + ".") == 1.0
        assert bt.score_item(item, " nothing useful") == 0.0


def test_length_scales_and_tokenizer_path():
    tok = CharTokenizer()
    for length in (500, 2000):
        item = bt.make_items("fact_qa", 1, length, seed=0, tokenizer=tok)[0]
        assert 0.8 * length <= len(tok(item.prompt).input_ids) <= 1.2 * length


def test_first_option_rejects_listing_every_option():
    item = bt.make_items("multikey_niah", 1, 300, seed=0)[0]
    wrong_first = [v for v in item.options if v not in item.answers][0]
    assert bt.score_item(item, f"{wrong_first} or {item.answers[0]}") == 0.0


def test_fewshot_prefix_continues_the_example_pattern():
    item = bt.make_items("fewshot_classification", 1, 400, seed=0)[0]
    text = bt.render(item, chat=False)
    last_example = item.prompt.rsplit("\n\n", 2)[-2]
    assert last_example.startswith("Word: ") and "\nCategory: " in last_example
    assert text.endswith("\n\n" + item.prompt.rsplit("\n\n", 1)[-1] + "\nCategory:")


def test_variable_tracking_asks_for_the_latest_assignment():
    item = bt.make_items("variable_tracking", 1, 600, seed=3)[0]
    name = item.answer_prefix.split()[1]
    assigned = re.findall(rf"VAR {name} = (\d+)\.", item.prompt)
    assert assigned == item.options and item.answers == [assigned[-1]] and len(set(assigned)) == bt.VT_ROUNDS


def test_a_model_without_a_chat_template_gets_plain_prompts_and_says_so():
    """kv_retrieval is calibrated in the chat template; a base model without one (Gemma 3 270M) must still
    run it, in plain text, and the run must record that it did."""
    from eval.lm.run import builtin_taskset
    from tests.conftest import FakeTokenizer

    class BaseTokenizer(FakeTokenizer):
        chat_template = None

    item = bt.make_items("kv_retrieval", 1, 300, seed=0)[0]
    assert bt.render(item, FakeTokenizer()).startswith("<user>")
    plain = bt.render(item, BaseTokenizer())
    assert plain == item.prompt + item.prefix_separator + item.answer_prefix
    assert bt.prompt_format("kv_retrieval", BaseTokenizer()) == "plain (no chat template)"
    assert bt.prompt_format("passkey", BaseTokenizer()) == "plain"
    taskset = builtin_taskset(["kv_retrieval", "passkey"], 1, 300, 0, BaseTokenizer())
    assert taskset.formats == {"kv_retrieval": "plain (no chat template)", "passkey": "plain"}
    assert not taskset.items[0].text.startswith("<user>")
