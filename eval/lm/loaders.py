"""Load official benchmark files from a data folder and build the official prompts.

    samples = load_longbench(data_dir, "hotpotqa", tokenizer, max_length=3500)

Files: LongBench `<data_dir>/<task>.jsonl` (fields input, context, answers, length, dataset, language,
all_classes, _id); ChouBun the same schema; InfiniteBench `<data_dir>/<task>.jsonl` (id, context,
input, answer, options). With a tokenizer and max_length, prompts longer than max_length tokens are
truncated in the middle (eval.lm.truncation).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.lm import choubun_config, infinitebench_config, longbench_config
from eval.lm.jsonl import DataError, expect_str_list, expect_type, read_jsonl
from eval.lm.truncation import middle_truncate

LONGBENCH_FIELDS = ("input", "context", "answers", "length", "dataset", "language", "all_classes", "_id")
INFINITEBENCH_FIELDS = ("id", "context", "input", "answer", "options")


@dataclass
class Sample:
    benchmark: str
    task: str
    id: Any
    prompt: str
    answers: Any  # list of reference strings (LongBench/ChouBun) or the InfiniteBench label
    max_new_tokens: int
    use_chat: bool = True  # whether the official pipeline wraps this prompt in the model's chat format
    all_classes: list | None = None
    length: int | None = None
    extra: dict = field(default_factory=dict)


def _truncate(prompt: str, tokenizer, max_length: int | None, joint: bool) -> str:
    if max_length is None:
        return prompt
    if tokenizer is None:
        raise ValueError("middle truncation needs a tokenizer")
    return middle_truncate(prompt, tokenizer, max_length, joint_decode=joint)


def _task_file(data_dir: Path, task: str) -> Path:
    path = Path(data_dir) / f"{task}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected the official {task}.jsonl in {data_dir})")
    return path


def _load_longbench_schema(benchmark, data_dir, task, prompts, maxlen, tokenizer, max_length, limit):
    if task not in prompts:
        raise ValueError(f"unknown {benchmark} task {task!r}; choose from {', '.join(prompts)}")
    path = _task_file(data_dir, task)
    samples = []
    for number, record in read_jsonl(path, LONGBENCH_FIELDS):
        expect_str_list(path, number, record, "answers")
        expect_str_list(path, number, record, "all_classes", optional=True)
        expect_type(path, number, record, "context", str, "a string")
        expect_type(path, number, record, "input", str, "a string")
        expect_type(path, number, record, "_id", (str, int), "a string or a number")
        if record["length"] is not None:
            expect_type(path, number, record, "length", int, "a whole number")
        prompt = prompts[task].format(**record)
        samples.append(Sample(
            benchmark, task, record["_id"], _truncate(prompt, tokenizer, max_length, joint=False),
            record["answers"], maxlen[task], use_chat=task not in longbench_config.NO_CHAT_TASKS,
            all_classes=record["all_classes"], length=record["length"],
        ))
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise DataError(f"{path}: no records (the file is empty)")
    return samples


def load_longbench(data_dir, task, tokenizer=None, max_length=None, limit=None) -> list[Sample]:
    return _load_longbench_schema("longbench", data_dir, task, longbench_config.DATASET2PROMPT,
                                  longbench_config.DATASET2MAXLEN, tokenizer, max_length, limit)


def load_choubun(data_dir, task, tokenizer=None, max_length=None, limit=None) -> list[Sample]:
    return _load_longbench_schema("choubun", data_dir, task, choubun_config.DATASET2PROMPT,
                                  choubun_config.DATASET2MAXLEN, tokenizer, max_length, limit)


# ---------------------------------------------------------------- InfiniteBench

def infinitebench_prompt(record: dict, task: str, template_set: str = "open") -> str:
    """The official create_prompt() for the "chat" (GPT-4) or "open" (open models) templates."""
    if template_set == "chat" and task == "math_calc":
        return record["context"]  # GPT-4 gets the expression as a chat turn after a system prompt
    template = infinitebench_config.TEMPLATES[template_set][task]
    if task == "code_run":
        call = re.findall(r"func_[0-9]+\(\-?[0-9]+\)", record["input"])[0]
        return template.format(func=call.split("(")[0], func_call=call, context=record["context"])
    if task in ("code_debug", "longbook_choice_eng"):
        options = {f"OPTION_{letter}": record["options"][i] for i, letter in enumerate("ABCD")}
        return template.format(context=record["context"], question=record["input"], **options)
    if task in ("longbook_qa_eng", "longbook_qa_chn"):
        return template.format(context=record["context"], question=record["input"])
    if task == "math_find":
        target = re.findall(r"The .+ of", record["input"])[0].lower()[:-3]
        return template.format(prefix=f"What is {target} in the following list?", context=record["context"],
                               input=record["input"])
    return template.format(context=record["context"], input=record["input"])


def infinitebench_answer(record: dict, task: str):
    """The official get_answer(): choice tasks get [option text, letter]."""
    answer = record["answer"]
    if task not in ("code_debug", "longbook_choice_eng"):
        return answer
    if isinstance(answer, list) and len(answer) == 2 and answer[1] in ("A", "B", "C", "D"):
        return answer
    text = answer[0] if isinstance(answer, list) and len(answer) == 1 else answer
    if not isinstance(text, str) or text not in record["options"]:
        raise ValueError(f"answer {answer!r} is not one of the options")
    return [text, "ABCD"[record["options"].index(text)]]


def load_infinitebench(data_dir, task, tokenizer=None, max_length=None, template_set="open",
                       limit=None) -> list[Sample]:
    if task not in infinitebench_config.MAX_NEW_TOKENS:
        raise ValueError(f"unknown InfiniteBench task {task!r}; choose from {', '.join(infinitebench_config.MAX_NEW_TOKENS)}")
    path = _task_file(data_dir, task)
    samples = []
    for number, record in read_jsonl(path, INFINITEBENCH_FIELDS):
        expect_type(path, number, record, "context", str, "a string")
        expect_type(path, number, record, "options", list, "a list")
        try:
            prompt = infinitebench_prompt(record, task, template_set)
            answer = infinitebench_answer(record, task)
        except (IndexError, KeyError, ValueError) as e:
            raise DataError(f"{path}:{number}: cannot build the {task} prompt/answer: {e}") from None
        samples.append(Sample("infinitebench", task, record["id"], _truncate(prompt, tokenizer, max_length, joint=True),
                              answer, infinitebench_config.MAX_NEW_TOKENS[task]))
        if limit is not None and len(samples) >= limit:
            break
    if not samples:
        raise DataError(f"{path}: no records (the file is empty)")
    return samples


LOADERS = {"longbench": load_longbench, "infinitebench": load_infinitebench, "choubun": load_choubun}
