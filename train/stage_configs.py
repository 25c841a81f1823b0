"""Each stage's typed config: the shared `RunConfig` sections plus the stage's own section
(STYLE.md points 3 and 11). `train/stages/__init__.py` maps stage names to these classes; the CLI
turns every field into a `--section.key=value` option (`train.config.flat_fields`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from train.config import RunConfig


@dataclass(kw_only=True)
class CopySection:
    """`[copy]` of text-pretrain: the copy curriculum (train/copy_curriculum.py); off by default."""

    warmup_steps: int = 0
    """Batches of copy rows only at the start of the run (0 = no curriculum)."""
    subset_steps: int = 0
    """Of those, the first ones draw their ids from `subset` fixed ids only."""
    subset: int = 256
    """How many ids the first warm-up batches copy."""
    fraction: float = 0.0
    """Share of the rows of every later batch that are copy rows (0 = prose only)."""
    span: int = 32
    """Longest piece of a copy row (pieces are 8–span tokens long, each followed by its repeat)."""

    def __post_init__(self) -> None:
        if not 0 <= self.subset_steps <= self.warmup_steps:
            raise ValueError(f"copy.subset_steps must be within 0..warmup_steps, got {self.subset_steps}")
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"copy.fraction must be in [0, 1), got {self.fraction}")
        if self.span < 2 or self.subset < 2:
            raise ValueError("copy.span and copy.subset must be ≥ 2")

    @property
    def active(self) -> bool:
        return self.warmup_steps > 0 or self.fraction > 0


@dataclass(kw_only=True)
class PretrainConfig(RunConfig):
    """`text-pretrain`: next-token loss on packed documents."""

    copy: CopySection = field(default_factory=CopySection)


@dataclass(kw_only=True)
class SFTSection:
    """Supervised finetuning specifics (llama3-spec §1.6)."""

    mask_prompt: bool = True
    """Loss on assistant tokens only (prompt, system and headers masked)."""
    copy_fraction: float = 0.0
    """Share of each batch's rows made copy rows of their own tokens, piece by piece
    (train/copy_curriculum.py), so that SFT does not unlearn what text-pretrain's copy rows taught."""


@dataclass(kw_only=True)
class SFTConfig(RunConfig):
    """`text-sft`: chat-format dialogues, CE on the assistant's tokens."""

    sft: SFTSection = field(default_factory=SFTSection)
    """SFT loss options."""


@dataclass(kw_only=True)
class DPOSection:
    """Direct preference optimisation as in llama3-spec §1.6."""

    beta: float = 0.1
    """DPO temperature β."""
    nll_coef: float = 0.2
    """Weight of the NLL term on the chosen response."""
    mask_special: bool = True
    """Mask header and termination tokens out of the DPO and NLL terms."""
    reference: str = ""
    """Frozen reference checkpoint; empty = the model.init checkpoint."""


@dataclass(kw_only=True)
class DPOConfig(RunConfig):
    """`text-dpo`: preference pairs, DPO against a frozen reference + NLL on chosen."""

    dpo: DPOSection = field(default_factory=DPOSection)
    """DPO loss options."""


@dataclass(kw_only=True)
class ClipSection:
    """Contrastive image–text pretraining of the image encoder (llama3-spec §3.1)."""

    vision_preset: str = "tiny"
    """Image-encoder preset (vision/config.py: tiny, small, vit-l-14, vit-h-14)."""
    embed_dim: int = 64
    """Joint embedding width of the image and text towers."""
    text_width: int = 128
    """Width of the small text tower."""
    text_layers: int = 2
    """Layers of the small text tower."""
    context_length: int = 32
    """Caption tokens kept by the text tower."""
    tile_size: int = 0
    """Override the preset's tile side in pixels, a multiple of 14 (0 = the preset's)."""
    max_tiles: int = 0
    """Override the preset's most tiles per image (0 = the preset's)."""
    region_weight: float = 0.0
    """Weight of the region–phrase contrastive loss on grounded samples (json `objects` with `name`
    and `box`; `vision.clip` Regions); 0 = whole images only."""


@dataclass(kw_only=True)
class VisionClipConfig(RunConfig):
    """`vision-clip`: contrastive pretraining of the image encoder with a small text tower."""

    clip: ClipSection = field(default_factory=ClipSection)
    """CLIP model options."""


@dataclass(kw_only=True)
class VisionSection:
    """The image path attached to the frozen LM (llama3-spec §3.2, §7)."""

    preset: str = "tiny"
    """Image-encoder preset (vision/config.py)."""
    encoder_init: str = ""
    """`vision-clip` checkpoint whose encoder starts the adapter stage; empty = random encoder."""
    cross_attention_every: int = 4
    """One gated cross-attention block per this many LM layers."""
    max_tiles: int = 0
    """Override the preset's most tiles per image (0 = the preset's)."""
    tile_size: int = 0
    """Override the preset's tile side in pixels, a multiple of 14 (0 = the preset's); with
    encoder_init the encoder's shape comes from that checkpoint and both overrides must be 0."""
    tasks: list[str] = field(default_factory=lambda: ["caption", "qa"])
    """What each image sample is turned into: "caption" (the prompt below → one of its captions)
    and/or "qa" (one of its question–answer pairs)."""
    prompt: str = "Describe the image."
    """The user prompt after `<|image|>` that asks for a caption (eval caption reuses it)."""
    captions: str = "any"
    """Captions a sample trains on: "any" of its references, or its "first" (canonical) one, so
    a short run learns one way to say it instead of hedging between word orders."""
    pack: int = 0
    """Training rows hold up to this many samples, each a document of its own that attends only
    its own image (`ImageChatBatcher`); 0 = one sample per row, padded to the batch's longest.
    The batch is still `data.batch_size` samples: packing removes padding, not examples."""
    match_branch_scale: bool = True
    """Start each cross-attention branch at the size of the LM layer updates beside it
    (`adapters.branch_scale`); off = the plain N(0, 0.02) init."""
    encoder_lr_scale: float = 1.0
    """LR factor of the image encoder (below 1 keeps more of what vision-clip learned)."""
    gate_lr_scale: float = 1.0
    """LR factor of the attention gates (above 1 opens them sooner)."""
    ffn_gate_lr_scale: float = 1.0
    """LR factor of the FFN gates (below 1 keeps the text-only FFN from learning the captions'
    language before the attention has learned to read the image)."""


@dataclass(kw_only=True)
class VisionAdapterConfig(RunConfig):
    """`vision-adapter`: image encoder, projection, cross-attention and new token rows on a frozen LM."""

    vision: VisionSection = field(default_factory=VisionSection)
    """Image path options."""


@dataclass(kw_only=True)
class VideoSection:
    """The temporal aggregator and video cross-attention (llama3-spec §4)."""

    preset: str = "tiny"
    """Temporal-aggregator preset (video/config.py); its width is set to the LM's."""
    frames: int = 0
    """Frames sampled uniformly per clip (0 = the preset's frames_per_group); clips with fewer
    frames repeat frames, unreadable or 0-frame clips are skipped and counted."""
    backend: str = "auto"
    """Frame decoder: auto (decord, PyAV fallback), decord or pyav."""
    prompts: list[str] = field(default_factory=lambda: ["Describe the motion.", "What happens in this video?"])
    """User prompts after `<|video|>` (one per clip, chosen by its key); the reply is a caption.
    `herd eval video` asks the first."""
    tasks: list[str] = field(default_factory=lambda: ["caption"])
    """What each clip trains on: "caption" (a prompt above → a caption) and/or "qa" (its
    question, e.g. "How does the teapot move?" → "down"; drawn per epoch with the caption)."""
    image_preset: str = "tiny"
    """Image-encoder preset of a random image path, used only when model.init is a text LM or
    empty (development); a vision-adapter init brings its own."""
    cache_features: bool = True
    """Keep each clip's frozen frame features in memory after its first read, so later epochs
    skip decoding and image encoding (~140 KB per tiny clip)."""
    match_branch_scale: bool = True
    """Start each video cross-attention branch at the size of the LM layer updates beside it
    (`adapters.branch_scale`); off = the plain N(0, 0.02) init."""
    gate_lr_scale: float = 1.0
    """LR factor of the video attention gates."""
    ffn_gate_lr_scale: float = 1.0
    """LR factor of the video FFN gates."""
    word_weight: float = 0.0
    """Weight of the auxiliary caption-word loss on the aggregator's latents (`video.word_head`:
    bag-of-words CE read through the LM's output table); 0 = caption loss only, as in the paper."""
    motion_dim: int = 0
    """Channels of the aggregator's time-odd motion summary (`video.motion`), set when a new video
    path is built; 0 = none, the Flamingo resampler as in the paper."""


@dataclass(kw_only=True)
class VideoAdapterConfig(RunConfig):
    """`video-adapter`: aggregator + video cross-attention; LM and image path frozen."""

    video: VideoSection = field(default_factory=VideoSection)
    """Video path options."""


@dataclass(kw_only=True)
class BestRQSection:
    """BEST-RQ self-supervised pretraining of the Conformer (llama3-spec §5.2)."""

    preset: str = "tiny"
    """Speech preset (speech/config.py)."""
    augment: bool = True
    """Speed-perturb and band-limit the training audio (speech/augment.py)."""
    probe_steps: int = 0
    """At each evaluation, train a linear CTC probe this many steps on frozen features of the
    encoder and of a randomly initialised twin, and report both CERs (0 = no probe)."""
    probe_utterances: int = 256
    """Training utterances the CTC probe learns from, and validation utterances it is scored on."""
    probe_upsample: int = 1
    """CTC steps per 40 ms frame of the probe (2: room for blanks in fast speech, speech/ctc_probe.py)."""


@dataclass(kw_only=True)
class SpeechBestRQConfig(RunConfig):
    """`speech-bestrq`: masked multi-codebook prediction on unlabelled audio."""

    bestrq: BestRQSection = field(default_factory=BestRQSection)
    """BEST-RQ options."""


@dataclass(kw_only=True)
class SpeechSection:
    """The speech path feeding the frozen LM (llama3-spec §5.3, §5.4)."""

    preset: str = "tiny"
    """Speech preset (speech/config.py)."""
    encoder_init: str = ""
    """`speech-bestrq` checkpoint whose Conformer starts the adapter stage (its encoder shape
    replaces the preset's); empty = random."""
    prompt: str = "Repeat after me in English:"
    """User text before the speech span; the assistant's reply is the transcript."""
    ctc_weight: float = 0.0
    """Weight of an auxiliary character-CTC loss on the encoder frames (0 = no CTC head)."""
    ctc_upsample: int = 1
    """CTC steps per 40 ms encoder frame of that head; 2 leaves room for CTC's blanks in fast
    speech, which has almost one character per frame (speech/ctc_probe.py)."""
    token_ctc_weight: float = 0.0
    """Weight of a CTC loss on the adapter outputs read as LM input embeddings: each output's
    cosine similarity to every frozen LM token embedding is a logit (the span's placeholder token
    is the blank), so the adapter learns to emit the transcript's own token embeddings in order,
    the input a frozen LM copies from (0 = off)."""
    token_ctc_temperature: float = 0.05
    """Cosine similarities are divided by this before the softmax of `token_ctc_weight`."""
    augment: bool = True
    """Speed-perturb and band-limit the training audio, and SpecAugment its features."""
    max_new_tokens: int = 64
    """Longest transcript generated when validation measures WER."""
    eval_wer_batches: int = 2
    """Validation batches transcribed greedily for `val_wer` at each evaluation (0 = none)."""


@dataclass(kw_only=True)
class SpeechAdapterConfig(RunConfig):
    """`speech-adapter`: Conformer + speech adapter on a frozen LM, CE on the transcript."""

    speech: SpeechSection = field(default_factory=SpeechSection)
    """Speech path options."""


@dataclass(kw_only=True)
class LongContextSection:
    """Context-length extension by stages (llama3-spec §1.4), scaled down."""

    lengths: list[int] = field(default_factory=lambda: [1024, 4096])
    """Sequence length of each extension phase, in order; data.seq_len is the pre-extension length
    that short-context validation uses."""
    min_steps: int = 20
    """Optimizer steps each phase runs before its finish criterion is checked."""
    max_steps: int = 60
    """A phase that has not recovered after this many steps moves on anyway (reported, not hidden)."""
    tokens_per_step: int = 4096
    """Tokens per micro-batch at every length: batch size = tokens_per_step / length (at least 1)."""
    recover_tolerance: float = 0.02
    """Finish criterion: short-context validation perplexity within this fraction of the
    pre-extension model's."""
    rope_theta: float = 500000.0
    """RoPE base frequency of the extended model."""
    rope_factor: float = 8.0
    """Llama 3.1 frequency scaling factor (1 = no scaling)."""
    min_doc_chars: int = 4000
    """Train on documents at least this long (whole chapters); 0 = every document."""


@dataclass(kw_only=True)
class LongContextConfig(RunConfig):
    """`text-longctx`: continued pretraining that grows the context phase by phase."""

    longctx: LongContextSection = field(default_factory=LongContextSection)
    """Extension phases and their finish criterion."""


@dataclass(kw_only=True)
class AnnealSection:
    """The last phase of pretraining (llama3-spec §1.5)."""

    tokens: int = 0
    """Anneal the LR linearly to zero over this many training tokens: sets train.steps to
    tokens / (data.batch_size × data.seq_len × train.grad_accum), the tokens of one rank; 0 = keep
    train.steps."""
    upsample_source: str = "austen"
    """Documents whose json `source` is this are up-sampled (the high-quality source)."""
    upsample_weight: float = 0.3
    """Fraction of each batch's rows drawn from the up-sampled source."""
    average_every: int = 10
    """Take a checkpoint into the Polyak average every this many steps (and at the last step)."""


@dataclass(kw_only=True)
class AnnealConfig(RunConfig):
    """`text-anneal`: linear LR decay to zero with an up-sampled source and a Polyak average."""

    anneal: AnnealSection = field(default_factory=AnnealSection)
    """Annealing options."""

    def __post_init__(self) -> None:
        if self.anneal.tokens > 0:
            per_step = self.data.batch_size * self.data.seq_len * self.train.grad_accum
            self.train.steps = max(1, -(-self.anneal.tokens // per_step))
        if not 0 <= self.anneal.upsample_weight <= 1:
            raise ValueError(f"anneal.upsample_weight must be in [0, 1], got {self.anneal.upsample_weight}")


__all__ = ["PretrainConfig", "SFTConfig", "SFTSection", "DPOConfig", "DPOSection", "ClipSection",
           "VisionClipConfig", "VisionSection", "VisionAdapterConfig", "VideoSection", "VideoAdapterConfig",
           "BestRQSection", "SpeechBestRQConfig", "SpeechSection", "SpeechAdapterConfig",
           "LongContextSection", "LongContextConfig", "AnnealSection", "AnnealConfig"]
