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


def _csv_rows(item, title):
    """The rows of the CSV block `title` in the item's prompt, as dicts by header."""
    lines = item.prompt.split(f"{title} (CSV):\n", 1)[1].split("\n")
    header, rows = lines[0].split(","), []
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) != len(header):
            break
        rows.append(dict(zip(header, cells)))
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_lookup_asks_one_column_of_one_row(seed):
    item = bt.make_items("table_lookup", 1, 700, seed=seed)[0]
    rows = _csv_rows(item, "Table")
    assert len(rows) == bt.TABLE_ROWS and list(rows[0]) == ["city", "code", "name", "year"]
    city = item.answer_prefix.rstrip(",")
    assert f"whose city is {city}?" in item.prompt.rsplit("\n\n", 1)[1]
    (row,) = [r for r in rows if r["city"] == city]
    assert item.answers == [row["code"]] and item.prompt.count(row["code"]) == 1
    assert sorted(item.options) == sorted(r["code"] for r in rows) and item.chance == 1 / bt.TABLE_ROWS
    assert bt.score_item(item, f"{row['code']},{row['name']},{row['year']}") == 1.0
    other = next(r for r in rows if r is not row)
    assert bt.score_item(item, f"{other['code']},{other['name']}") == 0.0
    assert bt.score_item(item, f"{row['year']}") == 0.0  # another column of the right row


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_join_needs_a_row_of_each_table(seed):
    item = bt.make_items("table_join", 1, 700, seed=seed)[0]
    employees, companies = _csv_rows(item, "Employees"), _csv_rows(item, "Companies")
    assert len(employees) == len(companies) == bt.JOIN_ROWS
    person = item.prompt.rsplit("\n\n", 1)[1].removeprefix("In which city does ").removesuffix(" work?")
    (employee,) = [r for r in employees if r["name"] == person]
    (office,) = [r for r in companies if r["company"] == employee["company"]]
    city = office["city"]
    # the city is only in the second table, the person only in the first
    assert item.answers == [f"{employee['company']},{city}", city]
    assert item.prompt.count(city) == 1 and item.prompt.count(person) == 3  # table, question twice
    assert item.prompt.count(item.answers[0]) == 1
    assert sorted(item.options) == sorted(r["city"] for r in companies) and item.chance == 1 / bt.JOIN_ROWS
    # the prefix starts a joined table with other employees' correct rows, then the asked person
    header, *examples, last = item.answer_prefix.split("\n")
    assert header == "name,company,city" and last == f"{person}," and len(examples) == bt.JOIN_EXAMPLES
    assert len(set(examples)) == len(examples)
    for example in examples:
        name, company, example_city = example.split(",")
        assert name != person and {"name": name, "company": company} in employees
        assert {"id": "x", "company": company, "city": example_city} in [dict(r, id="x") for r in companies]
    assert bt.score_item(item, f"{employee['company']},{city}\n") == 1.0
    wrong = next(r for r in companies if r["city"] != city)
    assert bt.score_item(item, f"{employee['company']},{wrong['city']}") == 0.0
    assert bt.score_item(item, f"{wrong['company']},{wrong['city']}") == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_two_keys_needs_both_conditions(seed):
    item = bt.make_items("table_two_keys", 1, 700, seed=seed)[0]
    rows = _csv_rows(item, "Table")
    city, color = item.answer_prefix.rstrip(",").split(",")
    assert f"whose city is {city} and whose color is {color}?" in item.prompt.rsplit("\n\n", 1)[1]
    assert len([r for r in rows if r["city"] == city]) == 2 and len([r for r in rows if r["color"] == color]) == 2
    (row,) = [r for r in rows if r["city"] == city and r["color"] == color]
    assert item.answers == [row["code"]] and item.prompt.count(row["code"]) == 1
    assert len({(r["city"], r["color"]) for r in rows}) == len(rows) == bt.TABLE_ROWS
    assert bt.score_item(item, f"{row['code']},{row['name']}") == 1.0
    for half in [r for r in rows if r is not row and (r["city"] == city or r["color"] == color)]:
        assert bt.score_item(item, f"{half['code']},{half['name']}") == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["table_lookup", "table_join", "table_two_keys"])
def test_table_tasks_with_the_real_tokenizer(task, smollm2):
    """Prompt lengths in SmolLM2 tokens, and the gold answer the graded fitness teacher-forces: the reply
    continues the CSV row right after the prefix's comma, without a space."""
    from evolve.prompts import BuiltinPrompts

    _, tokenizer = smollm2
    for length in (1000, 2000):
        for item in bt.make_items(task, 3, length, seed=0, tokenizer=tokenizer):
            n = len(tokenizer(bt.render(item, tokenizer), add_special_tokens=False).input_ids)
            assert 0.95 * length <= n <= 1.1 * length, (task, length, n)
    prompt = BuiltinPrompts(tokenizer).draw(task, 1, 600, "table-test")[0]
    item = bt.make_items(task, 1, 600, "table-test", tokenizer)[0]
    assert tokenizer.decode(prompt.answer_ids) == item.answers[0]
    assert prompt.score(item.answers[0]) == 1.0
