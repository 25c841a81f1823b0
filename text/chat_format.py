"""The Llama 3 chat format (llama3-spec §1.7; llama-models `chat_format.py`).

    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\nYou are terse.<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n          ← the generation prompt ends here

Roles are system, user, assistant and ipython (tool output); content is stripped, as in
llama-models. Special ids are inserted by id; message text never yields a special token, so a
user typing "<|eot_id|>" cannot end a turn. `CHAT_TEMPLATE` is the same format as a Jinja
template for Hugging Face's `apply_chat_template` (written into tokenizer_config.json).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # text.tokenizer imports CHAT_TEMPLATE from here
    from text.tokenizer import Tokenizer

__all__ = ["ROLES", "Message", "ChatFormat", "CHAT_TEMPLATE"]

ROLES: tuple[str, ...] = ("system", "user", "assistant", "ipython")

CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] not in ['system', 'user', 'assistant', 'ipython'] %}"
    "{{- raise_exception('unknown chat role ' + message['role']) }}"
    "{%- endif %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{{- message['content'] | trim }}"
    "{{- '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)
"""Jinja form of `ChatFormat.encode_dialog`; `apply_chat_template` gives the same ids."""


@dataclass(frozen=True)
class Message:
    """One chat turn."""

    role: str
    """system, user, assistant or ipython."""
    content: str
    """The message text (leading/trailing whitespace is stripped when encoded)."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown chat role {self.role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(self.content, str):
            raise ValueError(f"{self.role} message content must be a string, got {type(self.content).__name__}")

    @classmethod
    def coerce(cls, message: Message | Mapping[str, str]) -> Message:
        """A Message from itself or from a `{"role": …, "content": …}` dict (the HF/JSONL form)."""
        if isinstance(message, Message):
            return message
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise ValueError(f"a chat message needs 'role' and 'content', got {message!r:.80}")
        return cls(role=message["role"], content=message["content"])


class ChatFormat:
    """Encodes messages and dialogs in the Llama 3 chat format with a `Tokenizer`."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._headers = {role: self._encode_header(role) for role in ROLES}

    def _encode_header(self, role: str) -> list[int]:
        tok = self.tokenizer
        return [tok.start_header_id, *tok.encode(role), tok.end_header_id, *tok.encode("\n\n")]

    def encode_header(self, role: str) -> list[int]:
        """`<|start_header_id|>role<|end_header_id|>\\n\\n` as ids."""
        if role not in self._headers:
            raise ValueError(f"unknown chat role {role!r}; expected one of {', '.join(ROLES)}")
        return list(self._headers[role])

    def encode_message(self, message: Message | Mapping[str, str]) -> list[int]:
        """Header, stripped content, `<|eot_id|>`."""
        header, content = self._encode_parts(Message.coerce(message))
        return header + content

    def _encode_parts(self, message: Message) -> tuple[list[int], list[int]]:
        """(header ids, content ids + <|eot_id|>) — the split the SFT loss mask needs."""
        content = self.tokenizer.encode(message.content.strip())
        return self.encode_header(message.role), content + [self.tokenizer.eot_id]

    def encode_dialog(self, messages: Sequence[Message | Mapping[str, str]], *,
                      add_generation_prompt: bool) -> list[int]:
        """`<|begin_of_text|>`, every message, and (for inference) the assistant header."""
        tokens = [self.tokenizer.bos_id]
        for message in messages:
            tokens.extend(self.encode_message(message))
        if add_generation_prompt:
            tokens.extend(self.encode_header("assistant"))
        return tokens

    def encode_for_training(self, messages: Sequence[Message | Mapping[str, str]]) -> tuple[list[int], list[bool]]:
        """(tokens, loss_mask) for SFT: the mask is True exactly on assistant content tokens and the
        assistant's closing `<|eot_id|>` — the model learns to answer and to stop, not the headers."""
        parsed = [Message.coerce(m) for m in messages]
        if not any(m.role == "assistant" for m in parsed):
            raise ValueError("dialog has no assistant message to train on")
        tokens, mask = [self.tokenizer.bos_id], [False]
        for message in parsed:
            header, content = self._encode_parts(message)
            tokens += header + content
            mask += [False] * len(header) + [message.role == "assistant"] * len(content)
        return tokens, mask

    def decode_reply(self, tokens: Sequence[int]) -> str:
        """The assistant's reply text in generated tokens: after the last assistant header if the
        prompt is included, up to the first stop token, special tokens dropped, stripped."""
        tokens = [int(t) for t in tokens]
        header = self._headers["assistant"]
        for start in range(len(tokens) - len(header), -1, -1):
            if tokens[start:start + len(header)] == header:
                tokens = tokens[start + len(header):]
                break
        stops = set(self.tokenizer.stop_tokens)
        end = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
        return self.tokenizer.decode(tokens[:end], skip_special=True).strip()
