"""`herd train speech-bestrq`: BEST-RQ self-supervised pretraining of the Conformer encoder
(llama3-spec §5.5): augmented audio → log-mel → masked spans → one softmax per random-projection
codebook on the masked frames. The projections and codebooks are buffers that never train; the
loop checksums them (`frozen_modules`) at every checkpoint.

Evaluation reports masked-prediction loss and accuracy on the validation split (masks drawn from
a fixed seed, so evaluations compare), and with `bestrq.probe_steps` a linear CTC probe
(speech/ctc_probe.py) trained on frozen features of this encoder and of a randomly initialised
twin: the character error rates show what pretraining bought.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from speech.bestrq import BestRQ, build_bestrq
from speech.config import create_config
from speech.ctc_probe import CTCProbe, frozen_features
from speech.encoder import ConformerEncoder, build_encoder
from train.stage_configs import SpeechBestRQConfig
from train.distributed import DistEnv
from train.stages.audio_batches import AudioBatcher, training_augment
from train.stages.text_common import shard_list
from train.unit import StepOutput

EVAL_MASK_SEED = 1234
"""Validation masks come from this seed: every evaluation masks the same frames."""


class BestRQUnit:
    """The encoder and its prediction head train; the quantizer is frozen (buffers)."""

    def __init__(self, model: BestRQ, train_loader: AudioBatcher, make_val_loader, probe: "ProbeSetup | None"):
        self.model, self.train_loader, self.make_val_loader = model, train_loader, make_val_loader
        self.probe = probe
        self.tokenizer_path: Path | None = None

    def blocks(self) -> list[nn.Module]:
        return list(self.model.encoder.layers)

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"quantizer": self.model.quantizer}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        out = model(batch["feats"], batch["feat_lengths"])
        masked = out.mask.float().sum() / out.lengths.sum().clamp(min=1)
        return StepOutput(loss=out.loss, tokens=int(out.lengths.sum()),
                          metrics={"accuracy": float(out.accuracy), "masked_fraction": float(masked)})

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        metrics = self.masked_prediction(model, max_batches) if self.make_val_loader else {}
        if self.probe is not None:
            metrics.update(self.probe.run(self.model.encoder))
        return metrics

    def masked_prediction(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        device = next(self.model.parameters()).device
        generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        loss = correct = count = 0.0
        for i, batch in enumerate(self.make_val_loader()):
            if i >= max_batches:
                break
            out = model(batch["feats"].to(device), batch["feat_lengths"].to(device), generator=generator)
            n = out.targets.numel()
            loss += float(out.loss) * n
            correct += float(out.accuracy) * n
            count += n
        return {"val_loss": loss / count, "val_accuracy": correct / count} if count else {}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"model": self.model.spec(), "parents": [],
                "quantizer_sha256": self.model.quantizer.checksum()}


class ProbeSetup:
    """A linear CTC probe on frozen encoder frames: trained on `train` utterances, scored (CER) on
    `val`, for the encoder under training and for a fixed randomly initialised twin."""

    def __init__(self, train: list[dict[str, Any]], val: list[dict[str, Any]], random_encoder: ConformerEncoder,
                 *, steps: int, batch_size: int = 32, lr: float = 1e-2, upsample: int = 1):
        self.train, self.val, self.random_encoder = train, val, random_encoder
        self.steps, self.batch_size, self.lr, self.upsample = steps, batch_size, lr, upsample
        self._random_cer: float | None = None  # the random twin never changes: score it once

    def run(self, encoder: ConformerEncoder) -> dict[str, float]:
        if self._random_cer is None:
            self._random_cer = self.cer(self.random_encoder)
        return {"probe_cer": self.cer(encoder), "probe_cer_random": self._random_cer}

    def cer(self, encoder: ConformerEncoder) -> float:
        from eval.asr_metrics import score_corpus

        device = next(encoder.parameters()).device
        train = [frozen_features(encoder, b["feats"].to(device), b["feat_lengths"].to(device)) + (b["texts"],)
                 for b in self.train]
        probe = CTCProbe(encoder.dim, upsample=self.upsample).to(device)
        optimizer = torch.optim.Adam(probe.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(0)
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            for _ in range(self.steps):
                frames, lengths, texts = train[int(torch.randint(len(train), (), generator=generator))]
                loss = probe.loss(frames.float(), lengths, texts)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        refs, hyps = [], []
        for b in self.val:
            frames, lengths = frozen_features(encoder, b["feats"].to(device), b["feat_lengths"].to(device))
            hyps += probe.decode(frames.float(), lengths)
            refs += b["texts"]
        return score_corpus(refs, hyps).cer


def _probe_batches(batcher: AudioBatcher, utterances: int) -> list[dict[str, Any]]:
    out, seen = [], 0
    for batch in batcher:
        out.append({k: batch[k] for k in ("feats", "feat_lengths", "texts")})
        seen += len(batch["texts"])
        if seen >= utterances:
            break
    return out


def build(config: SpeechBestRQConfig, env: DistEnv) -> BestRQUnit:
    if config.model.init:
        raise ValueError("speech-bestrq trains from scratch; model.init must be empty")
    speech = create_config(config.bestrq.preset)
    model = build_bestrq(build_encoder(speech.encoder), speech.bestrq).to(env.device).train()
    d = config.data

    def batcher(split: str, seed: int, **kw) -> AudioBatcher:
        return AudioBatcher(shard_list(config, split), batch_size=d.batch_size, rank=env.rank,
                            world_size=env.world_size, seed=seed, **kw)

    augment = training_augment(speech.features.sample_rate) if config.bestrq.augment else None
    train_loader = batcher(d.train_split, config.run.seed, wave_augment=augment)
    make_val = (lambda: batcher(d.val_split, 0, epochs=1, shuffle=False)) if d.val_split else None
    probe = None
    if config.bestrq.probe_steps > 0:
        if not d.val_split:
            raise ValueError("bestrq.probe_steps needs data.val_split (the probe is scored there)")
        # a twin with its own seed: the random baseline does not depend on the training RNG stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.run.seed + 7919)
            random_encoder = build_encoder(speech.encoder).to(env.device)
        n = config.bestrq.probe_utterances
        probe = ProbeSetup(_probe_batches(batcher(d.train_split, 1, epochs=1), n), _probe_batches(make_val(), n),
                           random_encoder, steps=config.bestrq.probe_steps, upsample=config.bestrq.probe_upsample)
    return BestRQUnit(model, train_loader, make_val, probe)


__all__ = ["BestRQUnit", "ProbeSetup", "build"]
