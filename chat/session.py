"""One multi-turn conversation with a (possibly multimodal) checkpoint: history in the Llama 3 chat
format, media attached to user turns, streamed replies, an optional guard on both directions.

    session = ChatSession.load("runs/demo/text_sft", settings=Settings(max_new_tokens=64))
    session.add_media("image", "cat.png")                  # goes with the next user turn
    reply = session.ask("What is in the picture?", on_text=print)
    reply.text, reply.first_token_s, reply.tokens_per_s

Each turn re-encodes the whole conversation (system, every turn with its media tokens —
`<|image|>`/`<|video|>` before the user's text, speech spans after it —, the assistant header) and re-attaches every file of the conversation,
so the model sees exactly what a single prompt with that history would give it (llama3-spec §1.7
for the format; docs/internals.md "Multimodal models" for the media tokens).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from chat.media import MediaItem, attach_media, load_media

__all__ = ["Settings", "Turn", "Reply", "ChatSession"]


@dataclass(kw_only=True)
class Settings:
    """Decoding settings of every reply."""

    max_new_tokens: int = 128
    """Longest reply in tokens."""
    temperature: float = 0.0
    """0 = greedy; otherwise sampling temperature."""
    top_p: float = 0.9
    """Nucleus mass when sampling."""
    seed: int | None = 0
    """Sampling seed (None: a different reply each time)."""


@dataclass
class Turn:
    role: str
    """user or assistant."""
    content: str
    media: list[MediaItem] = field(default_factory=list)


@dataclass
class Reply:
    """An assistant reply and its timing."""

    text: str
    tokens: int
    """Generated tokens (stop token included)."""
    first_token_s: float
    """Seconds from the call to the first generated token (prompt encoding + media + prefill)."""
    seconds: float
    """Seconds for the whole reply."""
    blocked: str | None = None
    """Set when the guard stopped the turn: which direction and category."""

    @property
    def tokens_per_s(self) -> float:
        """Decoding speed after the first token."""
        decode = self.seconds - self.first_token_s
        return (self.tokens - 1) / decode if self.tokens > 1 and decode > 0 else 0.0


class ChatSession:
    """History + pending media + generation for one checkpoint."""

    def __init__(self, model: nn.Module, tokenizer, *, settings: Settings | None = None, system: str = "",
                 guard=None, checkpoint: str = "", video_frames: int | None = None) -> None:
        from text.chat_format import ChatFormat

        self.model, self.tokenizer, self.chat = model, tokenizer, ChatFormat(tokenizer)
        self.settings, self.system, self.guard = settings or Settings(), system, guard
        self.checkpoint, self.video_frames = checkpoint, video_frames
        self.turns: list[Turn] = []
        self.pending: list[MediaItem] = []

    @classmethod
    def load(cls, checkpoint: str | Path, **kwargs) -> ChatSession:
        from text.tokenizer import load_tokenizer
        from train.checkpoint import resolve_checkpoint
        from train.models import load_model

        path = resolve_checkpoint(checkpoint)
        model, meta = load_model(path)
        frames = (meta.get("config", {}).get("video") or {}).get("frames") or None
        return cls(model, load_tokenizer(path), checkpoint=str(path), video_frames=frames, **kwargs)

    # --- conversation state -------------------------------------------------------------------
    def add_media(self, kind: str, path: str | Path) -> MediaItem:
        """Check and prepare a file now (errors surface at once); it joins the next user turn."""
        held = [m for t in self.turns for m in t.media] + self.pending
        if kind == "video" and any(m.kind == "video" for m in held):
            raise ValueError("this conversation already has a video; /reset to start a new one")
        item = load_media(self.model, kind, path, video_frames=self.video_frames)
        self.pending.append(item)
        return item

    def reset(self) -> None:
        self.turns, self.pending = [], []

    def transcript(self) -> dict:
        """The conversation as JSON: checkpoint, system prompt, turns with their media paths."""
        return {"checkpoint": self.checkpoint, "system": self.system,
                "turns": [{"role": t.role, "content": t.content,
                           "media": [{"kind": m.kind, "path": m.path} for m in t.media]} for t in self.turns]}

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give a file name for the transcript")
        path.write_text(json.dumps(self.transcript(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    # --- generation ---------------------------------------------------------------------------
    def prompt_ids(self, turns: list[Turn]) -> list[int]:
        """The chat-format prompt of `turns`, ending with the assistant header."""
        tok = self.tokenizer
        ids = [tok.bos_id]
        if self.system.strip():
            ids += self.chat.encode_message({"role": "system", "content": self.system})
        for turn in turns:
            # The order each stage trained with: `<|image|>`/`<|video|>` before the text
            # ("<|image|>Describe the image."), speech spans after it ("Repeat after me in English:" + span).
            visual = [t for m in turn.media if m.kind != "audio" for t in m.tokens]
            speech = [t for m in turn.media if m.kind == "audio" for t in m.tokens]
            ids += (self.chat.encode_header(turn.role) + visual + tok.encode(turn.content.strip()) + speech
                    + [tok.eot_id])
        return ids + self.chat.encode_header("assistant")

    def ask(self, text: str, on_text: Callable[[str], None] | None = None) -> Reply:
        """Answer a user turn (text and/or the pending media); the turn joins the history unless
        the guard blocks it. on_text receives the reply as it is generated (not with a guard,
        which must see the whole reply before any of it is shown)."""
        from text.generate import generate

        if not text.strip() and not self.pending:
            raise ValueError("empty message: type some text or attach a file first")
        start = time.perf_counter()
        if self.guard is not None and text.strip():
            verdict = self.guard.check([{"role": "user", "content": text}], "user")
            if not verdict.safe:
                self.pending = []
                return Reply("", 0, 0.0, time.perf_counter() - start, blocked=f"request {verdict.describe()}")
        turn = Turn("user", text, self.pending)
        turns = self.turns + [turn]
        prompt = self.prompt_ids(turns)
        room = self.model.config.max_seq_len - len(prompt)
        if room < 2:
            raise ValueError(f"the conversation is {len(prompt)} tokens, the model's limit is "
                             f"{self.model.config.max_seq_len}; /reset to start over")
        stream = on_text if self.guard is None else None
        decode = self.tokenizer.stream_decoder(skip_special=True)
        stops = set(self.tokenizer.stop_tokens)
        first: list[float] = []

        def on_token(_: int, token: int) -> None:
            if not first:
                first.append(time.perf_counter() - start)
            if stream is not None and token not in stops:
                stream(decode(token))

        s = self.settings
        media = [m for t in turns for m in t.media]
        out = generate(self.model, [prompt], max_new_tokens=min(s.max_new_tokens, room),
                       temperature=s.temperature, top_p=s.top_p, seed=s.seed, stop_tokens=tuple(stops),
                       on_token=on_token, attach=attach_media(self.model, media))[0]
        reply = self.chat.decode_reply(out)
        elapsed = time.perf_counter() - start
        self.pending = []
        if self.guard is not None:
            verdict = self.guard.check([{"role": "user", "content": text}, {"role": "assistant", "content": reply}],
                                       "agent")
            if not verdict.safe:
                return Reply("", len(out), first[0] if first else elapsed, elapsed,
                             blocked=f"response {verdict.describe()}")
            if on_text is not None:
                on_text(reply)
        self.turns += [turn, Turn("assistant", reply)]
        return Reply(reply, len(out), first[0] if first else elapsed, elapsed)
