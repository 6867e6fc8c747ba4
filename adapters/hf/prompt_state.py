"""Where the forwards of one `attach` block stand in the prompt, and what the schedule wants there.

The attention function asks two questions of every forward: does it end the prompt (an update is due there
when the policy updates at prompt ends), and may the policy still observe and evict at all. A driver answers
them by naming what it feeds; nothing else sets this state:

| driver | what it says |
|---|---|
| `model.generate` (nothing said) | `AUTO`: a multi-token forward is the whole prompt, one-token forwards decode |
| `prefill` | `feeding(last)`: a chunk of the prompt, the last one or not |
| `prefill` then decoding, teacher forcing, a shared prefix | `continuing()`: more comes after the prompt; no prompt end |
| query-agnostic protocol | `context_ends_with_update()`: the context's end is an update for every policy; `frozen()` after it |
| kvzip | `context_ends_with_update(held=True)`: the driver runs that update itself, after its reconstruction |
"""
from __future__ import annotations

from dataclasses import dataclass

AUTO, PROMPT, PROMPT_LAST, AFTER_PROMPT = "auto", "prompt", "prompt_last", "after_prompt"


@dataclass
class PromptState:
    phase: str = AUTO  # AUTO, PROMPT (a chunk with more to come), PROMPT_LAST (ends the prompt), AFTER_PROMPT
    end_update: str = "policy"  # "policy" (its update_at_prompt_end), "always" (a context's end), "held" (driver)
    compressed: bool = False  # after a query-agnostic compression: tokens are kept as they come

    def feeding(self, last: bool) -> None:
        self.phase = PROMPT_LAST if last else PROMPT

    def continuing(self) -> None:
        self.phase = AFTER_PROMPT

    def reset(self) -> None:
        """Back to AUTO (model.generate's reading) once a driver's prompt is fed."""
        self.phase = AUTO

    def context_ends_with_update(self, held: bool = False) -> None:
        self.end_update = "held" if held else "always"

    def frozen(self) -> None:
        self.compressed = True

    def ends_prompt(self, q_len: int) -> bool:
        """Whether a forward of `q_len` new tokens ends the prompt (a one-token last chunk does too)."""
        if self.phase == AUTO:
            return q_len > 1
        return self.phase == PROMPT_LAST

    def update_at_end(self, policy) -> bool:
        """Whether the prompt's (or context's) end is an update for `policy`."""
        if self.end_update == "held":
            return False
        return self.end_update == "always" or policy.update_at_prompt_end

    def held_update_after(self, q_len: int) -> bool:
        """Whether the driver updates right after this forward, once it has reconstructed the context (kvzip)."""
        return self.end_update == "held" and not self.compressed and self.ends_prompt(q_len)

    def observing(self) -> bool:
        return not self.compressed
