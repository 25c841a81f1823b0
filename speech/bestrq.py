"""BEST-RQ self-supervised pretraining of the speech encoder (llama3-spec §5.5; Chiu et al. 2022).

1. Targets: 4 stacked normalised log-mel frames (one per 40 ms encoder frame) → a fixed random
   projection to 16-d → the index of the nearest codeword by cosine similarity, in each of 16
   independent (projection, codebook) pairs of 8,192 codewords. Projections and codebooks are
   buffers drawn from a seeded generator: they never train and equal seeds give equal targets.
2. Masking: every valid 10 ms input frame starts a span of 32 frames with probability 2.5%;
   masked input frames are replaced by N(0, 0.1²) noise. An encoder frame is masked when any
   of its 4 input frames is.
3. Loss: one softmax per codebook over a linear head on the encoder output of the masked
   frames, cross-entropy averaged over masked frames and codebooks; unmasked frames never
   reach the head.

    model = build_bestrq(encoder, create_config("tiny").bestrq)
    out = model(feats, lengths)            # BestRQOutput(loss, accuracy, …)
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from speech.attention import padding_mask
from speech.config import BestRQConfig, ConformerConfig
from speech.encoder import ConformerEncoder, build_encoder, stack_frames


def span_mask(lengths: Tensor, max_len: int, span: int, prob: float,
              generator: torch.Generator | None = None) -> Tensor:
    """[B, max_len] bool: each valid frame starts a `span`-frame masked run with probability `prob`.

    Spans are clipped at each utterance's length; padding is never masked.
    """
    valid = ~padding_mask(lengths, max_len)
    starts = (_rand(torch.rand, valid.shape, generator, lengths.device) < prob) & valid
    # frame t is masked if a span starts in (t - span, t]: a running count of starts.
    count = F.pad(starts.float().cumsum(dim=1), (span, 0))
    return ((count[:, span:] - count[:, :max_len]) > 0) & valid


def _rand(fn, shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """fn(shape) drawn on the generator's device (a CPU generator works for CUDA data too)."""
    where = generator.device if generator is not None else device
    return fn(shape, generator=generator, device=where).to(device)


def frames_mask(input_mask: Tensor, stride: int) -> Tensor:
    """Input-frame mask [B, T] → encoder-frame mask [B, ceil(T/stride)]: any input frame masked."""
    pad = -input_mask.shape[1] % stride
    return F.pad(input_mask, (0, pad)).view(input_mask.shape[0], -1, stride).any(dim=-1)


def tensor_checksum(*tensors: Tensor) -> str:
    """sha256 over the raw bytes of the tensors: equal iff they are bit-identical."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class RandomProjectionQuantizer(nn.Module):
    """Fixed random-projection quantizer: features [B, T, n_mels] → targets [B, ceil(T/stack), K].

    projection [K, stack·n_mels, d] (Xavier-uniform) and codebooks [K, V, d] (standard normal,
    stored L2-normalised) are non-trainable buffers saved in the state dict.
    """

    def __init__(self, n_mels: int, config: BestRQConfig):
        super().__init__()
        self.stack = config.stack
        K, V, d = config.n_codebooks, config.codebook_size, config.codebook_dim
        g = torch.Generator(device="cpu").manual_seed(config.seed)
        projection = torch.empty(K, config.stack * n_mels, d, device="cpu")
        for k in range(K):
            nn.init.xavier_uniform_(projection[k], generator=g)
        codebooks = F.normalize(torch.randn(K, V, d, generator=g, device="cpu"), dim=-1)
        self.register_buffer("projection", projection)
        self.register_buffer("codebooks", codebooks)

    def checksum(self) -> str:
        """sha256 of the projection and codebooks; a stage compares it before and after training."""
        return tensor_checksum(self.projection, self.codebooks)

    @torch.no_grad()
    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """Unmasked normalised features [B, T, n_mels] → code indices [B, ceil(T/stack), K] int64.

        Always fp32 (autocast off), so targets do not depend on the training precision; one
        codebook at a time, so memory is B·T'·V, not B·T'·K·V.
        """
        with torch.autocast(feats.device.type, enabled=False):
            stacked, _ = stack_frames(feats.float(), lengths, self.stack)  # [B, T', stack·n_mels]
            codes = []
            for projection, codebook in zip(self.projection, self.codebooks):
                projected = F.normalize(stacked @ projection, dim=-1)  # [B, T', d]
                codes.append((projected @ codebook.T).argmax(dim=-1))  # cosine: unit vectors
            return torch.stack(codes, dim=-1)


@dataclass
class BestRQOutput:
    """loss: scalar; accuracy: masked-prediction accuracy (fraction, scalar tensor);
    logits [N, K, V] and targets [N, K] for the N masked encoder frames (in row-major order);
    mask [B, T'] which encoder frames are masked; lengths [B] encoder frames."""

    loss: Tensor
    accuracy: Tensor
    logits: Tensor
    targets: Tensor
    mask: Tensor
    lengths: Tensor


def bestrq_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Multi-softmax cross-entropy: logits [N, K, V], targets [N, K] of the masked frames → mean
    over frames and codebooks (zero, still attached to the graph, when N = 0)."""
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


@torch.no_grad()
def masked_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """Fraction of (masked frame, codebook) pairs whose argmax is the target code."""
    if logits.shape[0] == 0:
        return torch.zeros((), device=logits.device)
    return (logits.argmax(dim=-1) == targets).float().mean()


class BestRQ(nn.Module):
    """The encoder under BEST-RQ: masks the input, predicts each masked frame's K code indices."""

    def __init__(self, encoder: ConformerEncoder, quantizer: RandomProjectionQuantizer,
                 head: nn.Linear, config: BestRQConfig):
        super().__init__()
        self.encoder, self.quantizer, self.head = encoder, quantizer, head
        self.config = config

    def spec(self) -> dict[str, Any]:
        """How to rebuild this model (meta.json `model`; `from_spec` is the inverse)."""
        return {"arch": "bestrq", "encoder": dataclasses.asdict(self.encoder.config),
                "bestrq": dataclasses.asdict(self.config)}

    def mask_input(self, feats: Tensor, lengths: Tensor,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Replace spans of input frames by noise → (masked feats, input-frame mask [B, T])."""
        c = self.config
        mask = span_mask(lengths, feats.shape[1], c.mask_span, c.mask_prob, generator)
        noise = _rand(torch.randn, feats.shape, generator, feats.device) * c.noise_std
        return torch.where(mask[..., None], noise.to(feats.dtype), feats), mask

    def forward(self, feats: Tensor, lengths: Tensor,
                generator: torch.Generator | None = None) -> BestRQOutput:
        """Normalised log-mel [B, T, n_mels] + lengths [B] → loss and accuracy on masked frames."""
        targets = self.quantizer(feats, lengths)
        masked_feats, input_mask = self.mask_input(feats, lengths, generator)
        frames, frame_lengths = self.encoder(masked_feats, lengths)
        mask = frames_mask(input_mask, self.config.stack)
        c = self.config
        # the K·V-way head runs on masked frames only: the loss never reads the others
        logits = self.head(frames[mask]).view(-1, c.n_codebooks, c.codebook_size)
        targets = targets[mask]
        return BestRQOutput(loss=bestrq_loss(logits, targets), accuracy=masked_accuracy(logits, targets),
                            logits=logits, targets=targets, mask=mask, lengths=frame_lengths)


def build_bestrq(encoder: ConformerEncoder, config: BestRQConfig) -> BestRQ:
    """Wrap `encoder` for BEST-RQ: a fixed quantizer plus a trainable K·V-way linear head."""
    if config.stack != encoder.config.stack:
        raise ValueError(f"BEST-RQ stack {config.stack} must equal the encoder stride "
                         f"{encoder.config.stack} (one target per encoder frame)")
    quantizer = RandomProjectionQuantizer(encoder.config.n_mels, config)
    head = nn.Linear(encoder.dim, config.n_codebooks * config.codebook_size)
    return BestRQ(encoder, quantizer, head, config)


def from_spec(spec: dict[str, Any]) -> BestRQ:
    """An untrained BEST-RQ model of the shape `BestRQ.spec()` describes (the quantizer is rebuilt
    from its seed, and the checkpoint's copy must match it bit for bit on a strict load)."""
    return build_bestrq(build_encoder(ConformerConfig(**spec["encoder"])), BestRQConfig(**spec["bestrq"]))


__all__ = ["span_mask", "frames_mask", "tensor_checksum", "RandomProjectionQuantizer",
           "BestRQOutput", "bestrq_loss", "masked_accuracy", "BestRQ", "build_bestrq", "from_spec"]
