"""The speech prompt of the `speech-adapter` stage and greedy transcription with a `SpeechFusion`
(llama3-spec §5.4: speech enters the LM as a span of adapter embeddings inside a chat turn).

    user: "Repeat after me in English:" <|speech_start|> n placeholders <|speech_end|>
    assistant: transcript <|eot_id|>

    prompt = SpeechPrompt(tokenizer, "Repeat after me in English:", vocab_size=fused.vocab_size)
    batch = prompt.training_rows(fused.speech_lengths(feat_lengths).tolist(), texts)  # tokens, targets
    texts = transcribe(fused, prompt, feats, feat_lengths)                           # greedy
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from adapters.speech_fusion import SpeechFusion, speech_span

IGNORE = -100


class SpeechPrompt:
    """Token rows around one utterance's speech span, for training and for generation."""

    def __init__(self, tokenizer, prompt: str, *, vocab_size: int):
        from text.chat_format import ChatFormat

        chat = ChatFormat(tokenizer)
        self.tokenizer, self.vocab_size, self.text = tokenizer, vocab_size, prompt
        self.head = [tokenizer.bos_id, *chat.encode_header("user"), *tokenizer.encode(prompt.strip() + " ")]
        self.tail = [tokenizer.eot_id, *chat.encode_header("assistant")]

    def prompt(self, n_speech: int) -> list[int]:
        """The generation prompt for an utterance of `n_speech` adapter tokens."""
        return self.head + speech_span(n_speech, self.vocab_size).tolist() + self.tail

    def training_rows(self, n_speech: Sequence[int], texts: Sequence[str]) -> dict[str, Tensor]:
        """{"tokens": [B, L], "targets": [B, L-1]} right-padded; targets are the transcript tokens
        and the closing <|eot_id|>, IGNORE elsewhere (prompt, speech span, padding)."""
        rows = []
        for n, text in zip(n_speech, texts):
            prompt = self.prompt(n)
            reply = self.tokenizer.encode(text.strip()) + [self.tokenizer.eot_id]
            rows.append((prompt + reply, [IGNORE] * (len(prompt) - 1) + reply))
        width = max(len(t) for t, _ in rows)
        tokens = torch.full((len(rows), width), self.tokenizer.pad_id, dtype=torch.long)
        targets = torch.full((len(rows), width - 1), IGNORE, dtype=torch.long)
        for i, (t, y) in enumerate(rows):
            tokens[i, :len(t)] = torch.tensor(t)
            targets[i, :len(y)] = torch.tensor(y)
        return {"tokens": tokens, "targets": targets}


@torch.no_grad()
def transcribe(model: SpeechFusion, prompt: SpeechPrompt, feats: Tensor, feat_lengths: Tensor, *,
               max_new_tokens: int = 64) -> list[str]:
    """Greedy transcripts of a padded batch of log-mel features [N, T, n_mels] with lengths [N]."""
    from text.generate import generate

    device = model.output.weight.device
    feats, feat_lengths = feats.to(device), feat_lengths.to(device)
    prompts = [prompt.prompt(int(n)) for n in model.speech_lengths(feat_lengths)]
    room = model.config.max_seq_len - max(len(p) for p in prompts)
    if room < 1:
        raise ValueError(f"audio of {int(feat_lengths.max())} frames does not fit the LM's context "
                         f"({model.config.max_seq_len} tokens); transcribe it in shorter chunks")
    tok = prompt.tokenizer
    out = generate(model, prompts, max_new_tokens=min(max_new_tokens, room), stop_tokens=tok.stop_tokens,
                   attach=lambda cache: model.attach_speech(cache, feats, feat_lengths))
    return [tok.decode([t for t in ids if t not in tok.stop_tokens], skip_special=True).strip() for ids in out]


__all__ = ["SpeechPrompt", "transcribe"]
