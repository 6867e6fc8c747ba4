"""A generated long-context suite that runs offline and is deterministic from a seed.

Ten tasks: passkey retrieval, multi-key needle-in-a-haystack, key-value retrieval, variable
tracking, few-shot classification, question answering over generated facts among distractors,
looking up a person in a directory table, looking up one column of one row of a CSV table, joining
two CSV tables (a two-hop question), and looking up the row of a CSV table that meets two conditions.
Each item carries the user prompt, the answer(s), the options present in the context (for the
"first_option" metric and the chance level) and an answer prefix that primes the reply.

Lengths are in tokens of the rendered prompt, measured with the tokenizer when one is given and
estimated (about 4 characters per token) otherwise.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

TASKS = ("passkey", "multikey_niah", "kv_retrieval", "variable_tracking", "fewshot_classification", "fact_qa",
         "phonebook", "table_lookup", "table_join", "table_two_keys")

# Calibrated formats (see eval/lm/CALIBRATION.md): whether to wrap the prompt in the chat template.
DEFAULT_CHAT = {
    "passkey": False,
    "multikey_niah": False,
    "kv_retrieval": True,
    "variable_tracking": False,
    "fewshot_classification": False,
    "fact_qa": False,
    "phonebook": False,
    "table_lookup": False,
    "table_join": False,
    "table_two_keys": True,
}

MAX_NEW_TOKENS = {
    "passkey": 8,
    "multikey_niah": 8,
    "kv_retrieval": 8,
    "variable_tracking": 8,
    "fewshot_classification": 6,
    "fact_qa": 8,
    "phonebook": 8,
    "table_lookup": 8,
    "table_join": 12,
    "table_two_keys": 8,
}


@dataclass(frozen=True)
class Item:
    task: str
    prompt: str  # the user message: instruction, context and question
    answers: list[str]
    metric: str  # "first_number" or "first_option"
    answer_prefix: str  # primes the reply; the prediction is what the model writes after it
    options: list[str] = field(default_factory=list)  # candidate answers present in the context
    prefix_separator: str = "\n\n"  # between the prompt and the answer prefix in the plain format

    @property
    def chance(self) -> float:
        """Score of a guess among the options in the context (0 for free-form numbers)."""
        return 1.0 / len(self.options) if self.options else 0.0


# ---------------------------------------------------------------- rendering

PLAIN_NO_TEMPLATE = "plain (no chat template)"


def prompt_format(task: str, tokenizer=None) -> str:
    """How `render` writes this task's prompts for this tokenizer: "chat", "plain", or, for a task calibrated
    in the chat template on a model that has none (a base model such as Gemma 3 270M), PLAIN_NO_TEMPLATE."""
    if not DEFAULT_CHAT[task]:
        return "plain"
    has_template = tokenizer is None or getattr(tokenizer, "chat_template", None) is not None
    return "chat" if has_template else PLAIN_NO_TEMPLATE


def render(item: Item, tokenizer=None, chat: bool | None = None) -> str:
    """The text fed to the model: the prompt, plain or in the chat template, then the answer prefix.
    With `chat` unset, the task's calibrated format; a tokenizer without a chat template gets plain text."""
    if chat is None:
        chat = prompt_format(item.task, tokenizer) == "chat"
    if chat:
        if tokenizer is None:
            raise ValueError("rendering with the chat template needs a tokenizer")
        head = tokenizer.apply_chat_template(
            [{"role": "user", "content": item.prompt}], tokenize=False, add_generation_prompt=True
        )
        return head + item.answer_prefix
    return item.prompt + item.prefix_separator + item.answer_prefix


def question_offset(item: Item, text: str) -> int:
    """Where the final question starts in `text` (a rendering of `item`): every built-in prompt ends with
    a paragraph holding only the question, after the context. The query-agnostic protocol compresses
    the text before this offset and appends the rest uncompressed."""
    start = text.rfind(item.prompt)
    if start < 0:
        raise ValueError(f"{item.task}: the rendered text does not contain the item's prompt")
    return start + item.prompt.rindex("\n\n") + 2


# ---------------------------------------------------------------- scoring

_NUMBER = re.compile(r"\d+")


def score_item(item: Item, prediction: str) -> float:
    if item.metric == "first_number":
        found = _NUMBER.search(prediction)
        return float(found is not None and found.group(0) in item.answers)
    if item.metric == "first_option":
        # The earliest option named in the prediction must be an answer; listing all options earns nothing.
        text = prediction.lower()
        best, best_at = None, len(text) + 1
        for option in set(item.options) | set(item.answers):
            match = re.search(r"(?<![a-z0-9])" + re.escape(option.lower()) + r"(?![a-z0-9])", text)
            if match and (match.start() < best_at or (match.start() == best_at and len(option) > len(best))):
                best, best_at = option, match.start()
        return float(best is not None and best.lower() in {a.lower() for a in item.answers})
    raise ValueError(f"unknown metric {item.metric!r}")


# ---------------------------------------------------------------- token budget

def token_counter(tokenizer=None) -> Callable[[str], int]:
    if tokenizer is None:
        return lambda text: max(1, round(len(text) / 4))
    cache: dict[str, int] = {}

    def count(text: str) -> int:
        if text not in cache:
            cache[text] = len(tokenizer(text, add_special_tokens=False).input_ids)
        return cache[text]

    return count


def _fill(rng: random.Random, budget: int, count, make_sentence: Callable[[random.Random], str]) -> list[str]:
    """Sentences whose joined token count reaches `budget` (sentences are counted one by one)."""
    sentences: list[str] = []
    used = 0
    while used < budget:
        sentence = make_sentence(rng)
        sentences.append(sentence)
        used += count(" " + sentence)
    return sentences


def _insert(rng: random.Random, sentences: list[str], needles: Sequence[str], lo: float = 0.05, hi: float = 0.95):
    """Insert each needle at a random depth between lo and hi of the haystack."""
    out = list(sentences)
    for needle in needles:
        n = len(out)
        position = rng.randint(int(lo * n), max(int(lo * n), int(hi * n)))
        out.insert(position, needle)
    return out


# ---------------------------------------------------------------- vocabularies

_PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."

_SUBJECTS = ["The old bridge", "A quiet village", "The river", "The morning train", "A small library", "The market",
             "The mountain road", "An empty field", "The harbour", "A wooden boat", "The garden", "The school bell",
             "A long winter", "The bakery", "The north wind", "A narrow street", "The museum", "The lighthouse"]
_PREDICATES = ["was busy all day", "looked calm in the evening", "stayed open until late", "needed new paint",
               "was covered in snow", "smelled of fresh bread", "was crowded on Sunday", "had a new sign",
               "was very quiet at night", "was visited by tourists", "was repaired last spring",
               "could be seen from far away", "was older than the town", "was lit by small lamps"]

_NAMES = ["Alice", "Bruno", "Clara", "David", "Elena", "Farid", "Greta", "Hugo", "Irene", "Jonas", "Karla", "Liam",
          "Maya", "Nikos", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Walter", "Yuki", "Zoe"]
_SURNAMES = ["Moreau", "Tanaka", "Haddad", "Quispe", "Larsen", "Garcia", "Kowalski", "Okafor", "Novak", "Silva",
             "Murphy", "Patel", "Kim", "Huber", "Costa", "Fischer", "Rossi", "Jensen", "Dubois", "Ivanova"]
_CITIES = ["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Madrid", "Sydney", "Toronto", "Berlin", "Nairobi", "Dublin",
           "Mumbai", "Seoul", "Vienna", "Lisbon", "Havana", "Athens", "Prague", "Boston", "Denver"]
_KEY_WORDS = ["apple", "river", "candle", "tiger", "window", "violin", "rocket", "pepper", "garden", "marble",
              "falcon", "cactus", "lantern", "pillow", "ribbon", "walnut", "anchor", "button", "castle", "dragon",
              "feather", "glacier", "harbor", "igloo", "jacket", "kettle", "lemon", "mirror", "needle", "orange"]

_ADJECTIVES = ["red", "blue", "green", "quick", "lazy", "tall", "small", "bright", "dark", "happy", "silent",
               "golden", "frozen", "wild", "gentle", "brave", "hidden", "ancient", "rapid", "lucky"]

_CATEGORIES = {
    "animal": ["dog", "cat", "horse", "rabbit", "lion", "sheep", "eagle", "goat", "wolf", "bear", "mouse", "duck",
               "frog", "deer", "whale", "camel", "zebra", "otter"],
    "fruit": ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear", "plum", "melon", "kiwi",
              "orange", "lime", "papaya", "apricot", "fig", "guava", "coconut"],
    "vehicle": ["car", "bus", "truck", "bicycle", "train", "boat", "plane", "tractor", "scooter", "taxi", "van",
                "ship", "tram", "helicopter", "canoe", "jeep", "subway", "motorcycle"],
    "color": ["red", "blue", "green", "yellow", "purple", "pink", "brown", "black", "white", "gray", "violet",
              "beige", "navy", "teal", "maroon", "olive", "cyan", "magenta"],
}


def _bland_sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_PREDICATES)}."


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randint(10 ** (n - 1), 10 ** n - 1))


def _distinct(rng: random.Random, make: Callable[[], str], n: int) -> list[str]:
    seen: list[str] = []
    while len(seen) < n:
        value = make()
        if value not in seen:
            seen.append(value)
    return seen


# ---------------------------------------------------------------- task builders
# Each builder returns an Item whose prompt has about `length` tokens (counted by `count`).

def _passkey(rng, length, count) -> Item:
    key = _digits(rng, 5)
    head = ("There is an important pass key hidden inside a lot of irrelevant text. "
            "Find it and memorize it. I will quiz you about it.")
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    question = "What is the pass key?"
    budget = length - count(head) - count(needle) - count(question) - 12
    filler = _fill(rng, budget, count, lambda r: _PASSKEY_FILLER)
    body = " ".join(_insert(rng, filler, [needle]))
    prompt = f"{head}\n\n{body}\n\n{question}"
    return Item("passkey", prompt, [key], "first_number", "The pass key is", [])


def _multikey(rng, length, count) -> Item:
    n_keys = 4
    keys = rng.sample(_KEY_WORDS, n_keys)
    values = _distinct(rng, lambda: _digits(rng, 4), n_keys)
    needles = [f"The special magic number for {k} is {v}." for k, v in zip(keys, values)]
    target = rng.randrange(n_keys)
    head = "Some special magic numbers are hidden inside the following text. Memorize them."
    question = f"What is the special magic number for {keys[target]}?"
    budget = length - count(head) - sum(count(x) for x in needles) - 2 * count(question) - 16
    body = " ".join(_insert(rng, _fill(rng, budget, count, _bland_sentence), needles))
    prompt = f"{head} {question}\n\n{body}\n\n{question}"
    return Item("multikey_niah", prompt, [values[target]], "first_option",
                f"The special magic number for {keys[target]} is", values)


def _kv(rng, length, count) -> Item:
    """A JSON object of KV_PAIRS word keys and 5-digit values, hidden at a random depth in filler text."""
    head = "Extract the value corresponding to the specified key in the JSON object hidden in the text below."
    keys = _distinct(rng, lambda: f"{rng.choice(_ADJECTIVES)}-{rng.choice(_KEY_WORDS)}", KV_PAIRS)
    values = _distinct(rng, lambda: _digits(rng, 5), KV_PAIRS)
    block = "JSON data: {" + ", ".join(f'"{k}": "{v}"' for k, v in zip(keys, values)) + "}"
    target = rng.randrange(KV_PAIRS)
    question = f'Key: "{keys[target]}"\nThe value associated with the specified key is:'
    budget = length - count(head) - count(block) - count(question) - 16
    body = " ".join(_insert(rng, _fill(rng, budget, count, _bland_sentence), [block]))
    prompt = f"{head}\n\n{body}\n\n{question}"
    # The prefix repeats the JSON pattern of the key so the reply starts with its value.
    return Item("kv_retrieval", prompt, [values[target]], "first_option", f'"{keys[target]}": "', values)


KV_PAIRS = 8
VT_VARIABLES, VT_ROUNDS = 3, 3


def _variable_tracking(rng, length, count) -> Item:
    """Variables reassigned in rounds (`VAR x = 12345.`); the question asks for one variable's latest value.

    Round r's assignments lie in the r-th part of the text, so the latest value is the last one written.
    The options are the target's own values (chance 1/VT_ROUNDS): naming an earlier value scores nothing.
    """
    names = rng.sample(_KEY_WORDS, VT_VARIABLES)
    values = _distinct(rng, lambda: _digits(rng, 5), VT_VARIABLES * VT_ROUNDS)
    rounds = [[f"VAR {name} = {values[r * VT_VARIABLES + v]}." for v, name in enumerate(names)]
              for r in range(VT_ROUNDS)]
    target = rng.randrange(VT_VARIABLES)
    head = ("Track the variables in the following text. A variable can be assigned several times; "
            "only its latest assignment counts.")
    question = f"What is the latest value of VAR {names[target]}?"
    budget = length - count(head) - 2 * count(question) - sum(count(s) for r in rounds for s in r) - 16
    sentences = _fill(rng, budget, count, _bland_sentence)
    n, body = len(sentences), []
    for r, statements in enumerate(rounds):
        body += _insert(rng, sentences[r * n // VT_ROUNDS:(r + 1) * n // VT_ROUNDS], statements, 0.0, 1.0)
    prompt = f"{head} {question}\n\n{' '.join(body)}\n\n{question}"
    history = [values[r * VT_VARIABLES + target] for r in range(VT_ROUNDS)]
    return Item("variable_tracking", prompt, [history[-1]], "first_option", f"VAR {names[target]} =", history)


def _fewshot(rng, length, count) -> Item:
    head = "Classify each word into one of these categories: " + ", ".join(_CATEGORIES) + ". Here are some examples."
    lines: list[str] = []
    budget = length - count(head) - 30
    total = 0
    while total < budget:
        label = rng.choice(list(_CATEGORIES))
        word = rng.choice(_CATEGORIES[label])
        line = f"Word: {word}\nCategory: {label}"
        lines.append(line)
        total += count(line + "\n\n")
    label = rng.choice(list(_CATEGORIES))
    word = rng.choice(_CATEGORIES[label])
    prompt = f"{head}\n\n" + "\n\n".join(lines) + f"\n\nWord: {word}"
    # The answer prefix continues the examples' "Word: x\nCategory: y" pattern (a blank line before it
    # breaks the pattern: the model then names an example word, 25% at 1000 tokens against 10/10).
    return Item("fewshot_classification", prompt, [label], "first_option", "Category:", list(_CATEGORIES), "\n")


def _fact_qa(rng, length, count) -> Item:
    n_people = 6
    people = [f"{first} {last}" for first, last in zip(rng.sample(_NAMES, n_people), rng.sample(_SURNAMES, n_people))]
    cities = rng.sample(_CITIES, n_people)
    facts = [f"{p} lives in {c}." for p, c in zip(people, cities)]
    target = rng.randrange(n_people)
    head = "Read the text and answer the question about where a person lives."
    question = f"In which city does {people[target]} live?"
    budget = length - count(head) - 2 * count(question) - sum(count(f) for f in facts) - 16
    body = " ".join(_insert(rng, _fill(rng, budget, count, _bland_sentence), facts))
    prompt = f"{head} {question}\n\n{body}\n\n{question}"
    return Item("fact_qa", prompt, [cities[target]], "first_option", f"{people[target]} lives in", cities)


PHONEBOOK_ENTRIES = 10


def _phonebook(rng, length, count) -> Item:
    """A directory of PHONEBOOK_ENTRIES people and 5-digit extensions, one entry a line, as one block at a
    random depth in filler text; the question asks for one person's extension (a table, not sentences)."""
    people = [f"{first} {last}" for first, last in
              zip(rng.sample(_NAMES, PHONEBOOK_ENTRIES), rng.sample(_SURNAMES, PHONEBOOK_ENTRIES))]
    numbers = _distinct(rng, lambda: _digits(rng, 5), PHONEBOOK_ENTRIES)
    block = "Office directory:\n" + "\n".join(f"{p}: extension {n}" for p, n in zip(people, numbers)) + "\n"
    target = rng.randrange(PHONEBOOK_ENTRIES)
    head = "The text below contains an office directory. Answer the question about it."
    question = f"What is the extension of {people[target]}?"
    budget = length - count(head) - count(block) - 2 * count(question) - 16
    body = " ".join(_insert(rng, _fill(rng, budget, count, _bland_sentence), [block]))
    prompt = f"{head} {question}\n\n{body}\n\n{question}"
    # The prefix repeats the directory line of the person, so the reply starts with the number.
    return Item("phonebook", prompt, [numbers[target]], "first_option", f"{people[target]}: extension",
                numbers)


TABLE_ROWS = 8


def _csv(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return f"{title} (CSV):\n" + ",".join(header) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"


def _table_item(rng, length, count, task, block, question, answer, options, prefix) -> Item:
    """One CSV block at a random depth in filler text; the question is asked before and after the text."""
    head = "The text below contains a table. Answer the question about it."
    budget = length - count(head) - count(block) - 2 * count(question) - 16
    body = " ".join(_insert(rng, _fill(rng, budget, count, _bland_sentence), [block]))
    prompt = f"{head} {question}\n\n{body}\n\n{question}"
    # The prefix starts the asked row on a new line, as in the table, so the reply continues that row.
    return Item(task, prompt, [answer], "first_option", prefix, options, "\n")


def _table_lookup(rng, length, count) -> Item:
    """A CSV table of TABLE_ROWS rows (city, code, name, year), one row a city; the question asks the code of
    the row of one city. Unlike phonebook the key is one column among several, under a header line."""
    cities = rng.sample(_CITIES, TABLE_ROWS)
    codes = _distinct(rng, lambda: _digits(rng, 5), TABLE_ROWS)
    people = [f"{first} {last}" for first, last in
              zip(rng.sample(_NAMES, TABLE_ROWS), rng.sample(_SURNAMES, TABLE_ROWS))]
    years = _distinct(rng, lambda: str(rng.randint(1950, 2020)), TABLE_ROWS)
    block = _csv("Table", ("city", "code", "name", "year"), list(zip(cities, codes, people, years)))
    target = rng.randrange(TABLE_ROWS)
    question = f"What is the code of the row whose city is {cities[target]}?"
    return _table_item(rng, length, count, "table_lookup", block, question, codes[target], codes,
                       f"{cities[target]},")


JOIN_ROWS = 5
JOIN_EXAMPLES = 2  # joined rows in the answer prefix: one scored 33.3% at 1500 tokens, two 58.3% (same 12 items)


def _table_join(rng, length, count) -> Item:
    """Two CSV tables at independent random depths: employees (name, company) and companies (id, company,
    city); the question asks the city a person works in, so the answer needs a row of each table.

    The answer prefix starts a joined table (name, company, city) with JOIN_EXAMPLES other employees' rows,
    then the asked person's name: the reply writes that person's company (first table), then its city
    (second). The gold continuation is `company,city`; a reply is scored by the first city it names (chance
    1/5 among the cities in the context; 1/3 for a guess that leaves out the examples' cities).
    """
    people = [f"{first} {last}" for first, last in
              zip(rng.sample(_NAMES, JOIN_ROWS), rng.sample(_SURNAMES, JOIN_ROWS))]
    companies = [w.capitalize() for w in rng.sample(_KEY_WORDS, JOIN_ROWS)]
    cities = rng.sample(_CITIES, JOIN_ROWS)
    order_a, order_b = rng.sample(range(JOIN_ROWS), JOIN_ROWS), rng.sample(range(JOIN_ROWS), JOIN_ROWS)
    employees = _csv("Employees", ("name", "company"), [(people[i], companies[i]) for i in order_a])
    # The id column puts a comma before the company, as in the joined row the reply writes.
    offices = _csv("Companies", ("id", "company", "city"),
                   [(str(k + 1), companies[i], cities[i]) for k, i in enumerate(order_b)])
    target = rng.randrange(JOIN_ROWS)
    examples = rng.sample([i for i in range(JOIN_ROWS) if i != target], JOIN_EXAMPLES)
    head = "The text below contains two tables. Answer the question about them."
    question = f"In which city does {people[target]} work?"
    budget = length - count(head) - count(employees) - count(offices) - 2 * count(question) - 40
    body = " ".join(_insert(rng, _fill(rng, budget, count, _bland_sentence), [employees, offices]))
    prompt = f"{head} {question}\n\n{body}\n\n{question}"
    prefix = "".join(["name,company,city\n"] + [f"{people[i]},{companies[i]},{cities[i]}\n" for i in examples]
                     + [f"{people[target]},"])
    return Item("table_join", prompt, [f"{companies[target]},{cities[target]}", cities[target]], "first_option",
                prefix, cities)


def _table_two_keys(rng, length, count) -> Item:
    """A CSV table (city, color, code, name) where each of 4 cities and each of 4 colors is in two rows and
    no (city, color) pair repeats; the question names a city and a color, so one condition alone leaves
    two rows. The prefix writes both conditions as the row starts; the reply should continue with the code."""
    cities, colors = rng.sample(_CITIES, 4), rng.sample(_CATEGORIES["color"], 4)
    pairs = [(cities[i], colors[i]) for i in range(4)] + [(cities[i], colors[(i + 1) % 4]) for i in range(4)]
    rng.shuffle(pairs)
    codes = _distinct(rng, lambda: _digits(rng, 5), TABLE_ROWS)
    people = [f"{first} {last}" for first, last in
              zip(rng.sample(_NAMES, TABLE_ROWS), rng.sample(_SURNAMES, TABLE_ROWS))]
    block = _csv("Table", ("city", "color", "code", "name"),
                 [(c, k, code, p) for (c, k), code, p in zip(pairs, codes, people)])
    target = rng.randrange(TABLE_ROWS)
    city, color = pairs[target]
    question = f"What is the code of the row whose city is {city} and whose color is {color}?"
    return _table_item(rng, length, count, "table_two_keys", block, question, codes[target], codes,
                       f"{city},{color},")


_BUILDERS = {
    "passkey": _passkey,
    "multikey_niah": _multikey,
    "kv_retrieval": _kv,
    "variable_tracking": _variable_tracking,
    "fewshot_classification": _fewshot,
    "fact_qa": _fact_qa,
    "phonebook": _phonebook,
    "table_lookup": _table_lookup,
    "table_join": _table_join,
    "table_two_keys": _table_two_keys,
}


def make_items(task: str, n: int, length: int, seed: int = 0, tokenizer=None) -> list[Item]:
    """`n` items of `task` with prompts of about `length` tokens; the same arguments give the same items."""
    if task not in _BUILDERS:
        raise ValueError(f"unknown builtin task {task!r}; choose from {', '.join(TASKS)}")
    if length < 64:
        raise ValueError(f"length {length} is too short for a long-context task (at least 64 tokens)")
    count = token_counter(tokenizer)
    return [_BUILDERS[task](random.Random(f"{seed}/{task}/{length}/{i}"), length, count) for i in range(n)]


def make_suite(n: int, length: int, seed: int = 0, tokenizer=None, tasks: Sequence[str] = TASKS) -> dict[str, list[Item]]:
    return {task: make_items(task, n, length, seed, tokenizer) for task in tasks}
