"""Teacher-forced answers: the model's next-token distributions over a gold answer after a prompt
processed under a memory policy (the graded fitnesses of evolution read these)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from adapters.hf.attach import attach
from adapters.hf.generation import _forward, prefill


@dataclass
class AnswerRun:
    logprobs: torch.Tensor  # [n_answer, vocab] float32 log-softmax before each answer token
    answer_ids: torch.Tensor  # [n_answer]
    cache_fraction: float  # kept / processed tokens after the answer, mean over layers

    @property
    def token_logprobs(self) -> torch.Tensor:
        """[n_answer]: log-probability of each gold answer token."""
        return self.logprobs.gather(1, self.answer_ids.view(-1, 1)).squeeze(1)


@torch.no_grad()
def answer_logprobs(model, input_ids: torch.Tensor, answer_ids: torch.Tensor, policy=None, prefill_chunk: int = 512,
                    observe_rows: int = 128, cache=None, exact: bool = False) -> AnswerRun:
    """Prefill `input_ids` [1, L] under `policy`, then feed the gold `answer_ids` [n] in one forward, as
    decoding would see them (no prompt-end update for the answer). `exact`: as in `attach`."""
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    answer_ids = answer_ids.flatten()
    if input_ids.shape[0] != 1:
        raise ValueError("answer_logprobs takes one prompt at a time")
    if answer_ids.numel() == 0:
        raise ValueError("the gold answer has no tokens")
    device = next(model.parameters()).device
    input_ids, answer_ids = input_ids.to(device), answer_ids.to(device)
    with attach(model, policy, observe_rows=observe_rows, exact=exact) as session:
        cache, last = prefill(model, session, input_ids, prefill_chunk, cache)
        return answer_after_prompt(model, session, cache, last, answer_ids)


@torch.no_grad()
def answer_after_prompt(model, session, cache, last_logits: torch.Tensor, answer_ids: torch.Tensor) -> AnswerRun:
    """Inside an `attach` block whose `cache` holds a whole prompt (`last_logits`: its last position's
    logits [1, vocab]): feed the gold answer in one forward, as decoding would see it."""
    answer_ids = answer_ids.flatten().to(last_logits.device)
    rows = [last_logits.float()]
    if answer_ids.numel() > 1:
        session.prompt.continuing()
        logits = _forward(model, answer_ids[:-1].unsqueeze(0), cache, cache.get_seq_length(), all_logits=True)
        rows.append(logits[0].float())
        session.prompt.reset()
    logprobs = torch.log_softmax(torch.cat(rows, dim=0), dim=-1).cpu()
    return AnswerRun(logprobs, answer_ids.cpu(), cache.fraction())


def mean_kl(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """Mean over answer positions of KL(reference || candidate), both [n, vocab] log-probabilities."""
    return float((reference.exp() * (reference - candidate)).sum(dim=-1).mean())
