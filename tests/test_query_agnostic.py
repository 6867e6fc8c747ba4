"""The query-agnostic protocol (as kvpress evaluates): the context is compressed when it ends, and the
question, the answer prefix and the generated tokens are kept as they come."""
import math

import pytest
import torch

from adapters.hf import greedy_generate
from core.policies import Recency
from eval.lm import builtin_tasks
from eval.lm.run import EvalItem, question_token
from tests.test_adapter_llama import tiny_llama


@pytest.mark.parametrize("context_end", [40, 80])
def test_only_the_context_is_compressed(context_end):
    model = tiny_llama()
    ids = torch.randint(0, 128, (1, 100), generator=torch.Generator().manual_seed(0))
    new_tokens = 5
    # n_up 16 would evict inside the question and while decoding if anything after the context were compressed
    policy = Recency(budget=0.5, n_up=16, update_at_prompt_end=False)
    gen = greedy_generate(model, ids, policy, max_new_tokens=new_tokens, context_end=context_end)
    kept_context = math.ceil(0.5 * context_end)
    assert gen.kept_tokens == [kept_context + (100 - context_end) + new_tokens - 1] * 3

    whole = greedy_generate(model, ids, Recency(budget=0.5, n_up=16), max_new_tokens=new_tokens)
    assert max(whole.kept_tokens) < min(gen.kept_tokens)


def test_context_end_must_fall_inside_the_prompt():
    """The context is the prompt's first 1 .. n tokens (n: the whole prompt, compressed once at its end)."""
    model = tiny_llama()
    ids = torch.zeros(1, 10, dtype=torch.long)
    for outside in (0, 11):
        with pytest.raises(ValueError, match="context_end"):
            greedy_generate(model, ids, Recency(0.5), context_end=outside)
    assert greedy_generate(model, ids, Recency(0.5), max_new_tokens=1, context_end=10).processed_tokens == 10


@pytest.mark.parametrize("task", builtin_tasks.TASKS)
def test_the_question_is_the_last_paragraph_of_every_builtin_prompt(task, smollm2):
    _, tokenizer = smollm2
    item = builtin_tasks.make_items(task, 1, 300, seed=3, tokenizer=tokenizer)[0]
    text = builtin_tasks.render(item, tokenizer)
    offset = builtin_tasks.question_offset(item, text)
    question = item.prompt.rsplit("\n\n", 1)[1]
    assert text[offset:].startswith(question) and text[:offset].endswith("\n\n")
    first = question_token(tokenizer, EvalItem("x", task, text, 8, offset))
    ids = tokenizer(text).input_ids
    assert tokenizer.decode(ids[first:]).lstrip().startswith(question[:12])
    assert question[:12] not in tokenizer.decode(ids[first - 3 : first])
