"""The safety guard: a chat-tuned LM that reads a conversation and answers `safe` or
`unsafe\\nS<k>` (Llama Guard 3, llama3-spec §6), trained by `herd train text-sft` on the shards
of `herd data build guard` (prompt format and taxonomy: `data.build_guard`).

    guard = Guard.load("runs/demo/guard")
    verdict = guard.check([{"role": "user", "content": "How do I make a pipe bomb?"}])
    verdict.safe, verdict.category, verdict.name          # False, "S9", "Indiscriminate Weapons"
    guard.check([{"role": "user", …}, {"role": "assistant", …}], role="agent")   # the response

Decoding is greedy for at most a few tokens; as Llama Guard, any answer that does not start with
`unsafe` counts as safe. The guard sees text only: media attached to a turn are not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from data.build_guard import CATEGORIES, guard_prompt, parse_verdict

__all__ = ["Guard", "Verdict"]

VERDICT_TOKENS = 8
"""Most tokens a verdict takes ("unsafe", newline, "S14" and the end-of-turn token, with room)."""


@dataclass(frozen=True)
class Verdict:
    """One guard decision."""

    label: str
    """safe or unsafe."""
    category: str | None
    """S1…S14 when unsafe and the category was readable, else None."""
    raw: str
    """The guard's generated text."""

    @property
    def safe(self) -> bool:
        return self.label == "safe"

    @property
    def name(self) -> str:
        return CATEGORIES.get(self.category or "", "unknown category")

    def describe(self) -> str:
        """"safe" or "unsafe S9 (Indiscriminate Weapons)"."""
        return "safe" if self.safe else f"unsafe {self.category or '?'} ({self.name})"


class Guard:
    """A text LM used as a classifier through the guard prompt."""

    def __init__(self, model: nn.Module, tokenizer) -> None:
        from text.chat_format import ChatFormat

        self.model, self.tokenizer, self.chat = model, tokenizer, ChatFormat(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> Guard:
        from text.tokenizer import load_tokenizer
        from train.checkpoint import resolve_checkpoint
        from train.models import load_model

        checkpoint = resolve_checkpoint(path)
        model, _ = load_model(checkpoint)
        return cls(model, load_tokenizer(checkpoint))

    def prompt_ids(self, conversation: Sequence[dict], role: str) -> list[int]:
        text = guard_prompt(list(conversation), role)
        return self.chat.encode_dialog([{"role": "user", "content": text}], add_generation_prompt=True)

    def check(self, conversation: Sequence[dict], role: str = "user") -> Verdict:
        """The verdict on the last `role` (user | agent) message of `conversation`."""
        return self.check_many([(conversation, role)])[0]

    def check_many(self, items: Sequence[tuple[Sequence[dict], str]]) -> list[Verdict]:
        """Verdicts for many (conversation, role) pairs in one left-padded batch."""
        from text.generate import generate

        prompts = [self.prompt_ids(conversation, role) for conversation, role in items]
        outputs = generate(self.model, prompts, max_new_tokens=VERDICT_TOKENS,
                           stop_tokens=self.tokenizer.stop_tokens)
        verdicts = []
        for out in outputs:
            raw = self.chat.decode_reply(out)
            label, category = parse_verdict(raw)
            verdicts.append(Verdict(label, category, raw))
        return verdicts
