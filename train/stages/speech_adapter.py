"""`herd train speech-adapter`: the Conformer encoder and speech adapter learn to feed a frozen text
LM (llama3-spec §5.3–5.4). The LM comes from `model.init` (a text-sft run), the encoder from
`speech.encoder_init` (a speech-bestrq run). Each utterance becomes one chat turn — user: the
prompt and the speech span; assistant: the transcript — and the loss is cross-entropy on the
transcript tokens only. Encoder, adapter and the 8 new token rows train; every LM tensor is frozen
and checksummed by the loop. Optionally (`speech.ctc_weight`) a linear character-CTC head on the
encoder frames adds an auxiliary loss that aligns the encoder early, and (`speech.token_ctc_weight`)
a CTC loss pulls the adapter outputs towards the transcript's LM token embeddings
(speech/token_ctc.py), the input a frozen LM can copy from.

The loss calls the fused model's pieces directly (to project only the transcript positions onto
the vocabulary), so the stage runs in one process; DDP/FSDP would bypass the wrapper.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from adapters.policies import POLICIES, apply_policy
from adapters.speech_fusion import PLACEHOLDER_OFFSET, SpeechFusion, build_speech_fusion
from speech.augment import SpecAugment
from speech.config import ConformerConfig, create_config
from speech.token_ctc import token_ctc_loss
from speech.transcribe import IGNORE, SpeechPrompt, transcribe
from train.stage_configs import SpeechAdapterConfig
from train.distributed import DistEnv
from train.stages.audio_batches import AudioBatcher, training_augment
from train.stages.text_common import (build_lm, cross_entropy, load_tokenizer_for, parent_entry,
                                      resolve_checkpoint, shard_list, tokenizer_file)
from train.unit import StepOutput


class SpeechAdapterUnit:
    """Speech path trains, LM frozen: CE on transcripts (+ optional encoder CTC)."""

    def __init__(self, model: SpeechFusion, prompt: SpeechPrompt, train_loader: AudioBatcher, make_val_loader,
                 *, tokenizer_path: Path | None, parents: list[dict], ctc_weight: float, max_new_tokens: int,
                 eval_wer_batches: int, token_ctc_weight: float = 0.0, token_ctc_temperature: float = 0.05):
        self.model, self.prompt, self.train_loader, self.make_val_loader = model, prompt, train_loader, make_val_loader
        self.tokenizer_path, self.parents = tokenizer_path, parents
        self.ctc_weight, self.max_new_tokens, self.eval_wer_batches = ctc_weight, max_new_tokens, eval_wer_batches
        self.token_ctc_weight, self.token_ctc_temperature = token_ctc_weight, token_ctc_temperature

    def blocks(self) -> list[nn.Module]:
        return list(self.model.speech_encoder.layers)

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {}

    def rows(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        device = batch["feats"].device
        n_speech = self.model.speech_lengths(batch["feat_lengths"]).tolist()
        return {k: v.to(device) for k, v in self.prompt.training_rows(n_speech, batch["texts"]).items()}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        """CE on the transcript tokens (+ ctc_weight × encoder CTC + token_ctc_weight × adapter-output
        CTC against the LM's token embeddings). The LM's output projection runs
        on the supervised positions only: most positions are prompt and speech, and the
        vocabulary-wide matmul would dominate the step. Runs on the unwrapped fused model."""
        rows = self.rows(batch)
        feats, lengths, targets = batch["feats"], batch["feat_lengths"], rows["targets"]
        fused = self.model
        frames, frame_lengths = fused.speech_encoder(feats, lengths)
        speech, speech_lengths = fused.speech_adapter(frames, frame_lengths)
        hidden = fused.text_model.hidden_states(embeds=fused.embed(rows["tokens"][:, :-1], speech, speech_lengths))
        supervised = targets != IGNORE
        ce = cross_entropy(fused.output(hidden[supervised])[None], targets[supervised][None])
        metrics = {"supervised_tokens": float(supervised.sum()), "ce": float(ce.detach())}
        loss = ce
        if fused.ctc_head is not None:
            ctc = fused.ctc_head.loss(frames, frame_lengths, batch["texts"])
            loss = loss + self.ctc_weight * ctc
            metrics["ctc"] = float(ctc.detach())
        if self.token_ctc_weight > 0:
            tok = self.prompt.tokenizer
            token_ctc = token_ctc_loss(speech, speech_lengths, [tok.encode(t.strip()) for t in batch["texts"]],
                                       fused.tok_embeddings.weight, blank=fused.vocab_size + PLACEHOLDER_OFFSET,
                                       temperature=self.token_ctc_temperature)
            loss = loss + self.token_ctc_weight * token_ctc
            metrics["token_ctc"] = float(token_ctc.detach())
        return StepOutput(loss=loss, tokens=rows["tokens"].numel(), metrics=metrics)

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        if self.make_val_loader is None:
            return {}
        from eval.asr_metrics import score_corpus

        device = self.model.output.weight.device
        total = count = 0.0
        refs, hyps = [], []
        for i, batch in enumerate(self.make_val_loader()):
            if i >= max(max_batches, self.eval_wer_batches):
                break
            feats, lengths = batch["feats"].to(device), batch["feat_lengths"].to(device)
            if i < max_batches:
                rows = self.rows({"feats": feats, "feat_lengths": lengths, "texts": batch["texts"]})
                n = int((rows["targets"] != IGNORE).sum())
                total += float(cross_entropy(model(rows["tokens"][:, :-1], feats, lengths), rows["targets"])) * n
                count += n
            if i < self.eval_wer_batches:
                hyps += transcribe(self.model, self.prompt, feats, lengths, max_new_tokens=self.max_new_tokens)
                refs += batch["texts"]
        metrics = {"val_loss": total / count} if count else {}
        if refs:
            metrics["val_wer"] = score_corpus(refs, hyps).wer
        return metrics

    def write_samples(self, path: Path) -> None:
        """A few validation transcripts beside their references."""
        if self.make_val_loader is None:
            return
        was_training = self.model.training
        self.model.eval()
        batch = next(iter(self.make_val_loader()))
        hyps = transcribe(self.model, self.prompt, batch["feats"], batch["feat_lengths"],
                          max_new_tokens=self.max_new_tokens)
        self.model.train(was_training)
        path.write_text("".join(f"ref: {r}\nhyp: {h}\n\n" for r, h in zip(batch["texts"], hyps)))

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": self.model.spec(), "parents": self.parents, "speech_prompt": self.prompt.text}


def load_encoder(model: SpeechFusion, spec: str) -> dict[str, Any]:
    """Copy a speech-bestrq checkpoint's encoder into `model` (strictly); its parent entry."""
    from train.models import load_model

    ckpt = resolve_checkpoint(spec)
    bestrq, meta = load_model(ckpt)
    if meta["model"]["arch"] != "bestrq":
        raise ValueError(f"speech.encoder_init {spec}: a {meta['model']['arch']} checkpoint, not bestrq")
    model.speech_encoder.load_state_dict(bestrq.encoder.state_dict(), strict=True)
    return parent_entry(ckpt)


def build(config: SpeechAdapterConfig, env: DistEnv) -> SpeechAdapterUnit:
    s, d = config.speech, config.data
    if env.world_size > 1:
        raise ValueError("speech-adapter runs its loss on the unwrapped model (supervised positions "
                         "only); it supports one process")
    tokenizer = load_tokenizer_for(config)
    lm, parents = build_lm(config, env, tokenizer.vocab_size)
    speech = create_config(s.preset)
    if s.encoder_init:
        from train.checkpoint import read_meta

        encoder = read_meta(resolve_checkpoint(s.encoder_init))["model"].get("encoder", {})
        speech = dataclasses.replace(speech, encoder=ConformerConfig(**encoder))
    model = build_speech_fusion(lm, speech, ctc_head=s.ctc_weight > 0, ctc_upsample=s.ctc_upsample).to(env.device)
    if s.encoder_init:
        parents.append(load_encoder(model, s.encoder_init))
    apply_policy(model, POLICIES["speech-adapter"](model))  # LM frozen, speech path trains
    model.train()
    prompt = SpeechPrompt(tokenizer, s.prompt, vocab_size=model.vocab_size)

    def batcher(split: str, seed: int, **kw) -> AudioBatcher:
        return AudioBatcher(shard_list(config, split), batch_size=d.batch_size, rank=env.rank,
                            world_size=env.world_size, seed=seed, **kw)

    augment = {"wave_augment": training_augment(speech.features.sample_rate),
               "spec_augment": SpecAugment().train()} if s.augment else {}
    make_val = (lambda: batcher(d.val_split, 0, epochs=1, shuffle=False)) if d.val_split else None
    return SpeechAdapterUnit(model, prompt, batcher(d.train_split, config.run.seed, **augment), make_val,
                             tokenizer_path=tokenizer_file(config), parents=parents, ctc_weight=s.ctc_weight,
                             max_new_tokens=s.max_new_tokens, eval_wer_batches=s.eval_wer_batches,
                             token_ctc_weight=s.token_ctc_weight, token_ctc_temperature=s.token_ctc_temperature)


__all__ = ["SpeechAdapterUnit", "load_encoder", "build"]
