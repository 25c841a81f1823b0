"""`herd data build speech`: synthetic utterances of the Harvard sentences, many voices, 16 kHz flac.

Every sample is `flac` (16 kHz mono PCM-16) + `json` {"text", "voice", "accent", "engine",
"speaker", "pitch", "speed", "augment", "seconds"}.

Engines: espeak-ng (8 English accents × ~100 voice variants, per-utterance pitch `-p` and speed
`-s`) and flite (voices kal/kal16/rms/slt/awb, a different synthesis method). espeak-ng runs
*in-process* through `libespeak-ng` (ctypes, synchronous mode): a pool of forked processes, one
fresh engine per batch of 64 sentences, each sentence synthesised into its own buffer — no
per-utterance process start and no splitting of a long recording (the `espeak-ng` CLI, one call per
utterance, is the fallback). Measured here: ~9 ms per utterance in-process vs ~25 ms per CLI call.
espeak's 22.05 kHz is resampled to 16 kHz with `scipy.signal.resample_poly` (320/441).

Splits never share a voice or a prompt:
- prompts: the 72 Harvard lists of ten are split by list (`data.text_sources.harvard_list_split`,
  which the text corpus shares: ~10 % test, ~7 % validation, the rest train); a `novel_fraction`
  of the train utterances instead speak a short sentence of the train-split novels (Austen,
  Moby-Dick; `data.build_text.assign_split`): ~500 Harvard sentences are too few words for a
  recogniser that must spell sentences it never heard;
- espeak variants: `stable_fraction("variant", v)` < 0.15 → test, < 0.25 → validation, else train;
- accents `TEST_ONLY_ACCENTS` (Caribbean, Scottish) appear only in test (flite's Scottish `awb`
  too); flite `slt` is validation-only, kal/kal16/rms train-only.
Train utterances are augmented (20 % band-limited through 8 kHz, 10 % white noise at 15–30 dB SNR),
recorded in `augment`; validation and test are clean.
"""

from __future__ import annotations

import ctypes
import io
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from data.scenes import stable_fraction
from data.text_sources import harvard_list_split

__all__ = ["PRESETS", "SpeechPreset", "ACCENTS", "TEST_ONLY_ACCENTS", "FLITE_VOICES", "build",
           "espeak_variants", "variant_split", "prompt_splits", "synthesize", "Utterance"]

SPLITS = ("train", "validation", "test")
SAMPLE_RATE = 16000
ACCENTS = ("en-us", "en-gb", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc")
TEST_ONLY_ACCENTS = ("en-029", "en-gb-scotland")
_LIB_VOICE = {"en-gb": "en"}  # libespeak-ng's SetVoiceByName knows British English by its file name
FLITE_VOICES = {"kal": ("en-us", "train"), "kal16": ("en-us", "train"), "rms": ("en-us", "train"),
                "slt": ("en-us", "validation"), "awb": ("en-gb-scotland", "test")}
"""flite voice -> (accent, the one split it appears in). kal and kal16 are one speaker."""


@dataclass(frozen=True, kw_only=True)
class SpeechPreset:
    """Sizes of a speech build."""

    utterances: dict[str, int]
    """Utterances per split."""
    flite_fraction: float
    """Share of utterances synthesised by flite (the rest by espeak-ng)."""
    novel_fraction: float = 0.0
    """Share of train utterances that speak a novel sentence instead of a Harvard sentence."""
    workers: int
    """Synthesis processes."""


PRESETS = {
    "micro": SpeechPreset(utterances={"train": 12, "validation": 4, "test": 8}, flite_fraction=0.25, workers=1),
    "tiny": SpeechPreset(utterances={"train": 1500, "validation": 150, "test": 300}, flite_fraction=0.15, workers=2),
    "full": SpeechPreset(utterances={"train": 30000, "validation": 1000, "test": 2000}, flite_fraction=0.15,
                         novel_fraction=0.6, workers=2),
}


@dataclass(frozen=True)
class Utterance:
    """Everything needed to synthesise one sample (drawn in the parent: workers are pure)."""

    key: str
    text: str
    engine: str  # "espeak-ng" | "flite"
    accent: str
    voice: str  # espeak variant ("f3", "Alex") or flite voice ("slt")
    pitch: int  # espeak -p (0-99); flite: 0
    speed: float  # espeak -s words/min; flite: duration stretch
    augment: str  # "", "bandlimit8k", "noise"
    seed: int


# ------------------------------------------------------------------------------------- splits

def espeak_variants() -> list[str]:
    """The voice variant names espeak-ng knows (`espeak-ng --voices=variant`, file `!v/NAME`)."""
    try:
        out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)") from None
    names = [line.split()[3].removeprefix("!v/") for line in out.splitlines()[1:] if len(line.split()) >= 4]
    return sorted(set(names))


def variant_split(variant: str) -> str:
    f = stable_fraction("variant", variant)
    return "test" if f < 0.15 else "validation" if f < 0.25 else "train"


def prompt_splits(sentences: list[str]) -> dict[str, list[str]]:
    """Harvard sentences by split, whole lists of ten at a time."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for start in range(0, len(sentences), 10):
        out[harvard_list_split(start // 10 + 1)].extend(sentences[start:start + 10])
    return out


def novel_sentences(cache: Path, seed: int = 0) -> list[str]:
    """Short plain sentences (5–14 words, letters and basic punctuation) of the novels' train split."""
    from data.build_chat import _sentences
    from data.build_text import assign_split
    from data.text_sources import austen, moby_dick

    keep = re.compile(r"[A-Za-z][A-Za-z ,.;'!?-]*")
    out = {s for doc in austen(cache) + moby_dick(cache) if assign_split(doc, seed) == "train"
           for s in _sentences(doc.text) if keep.fullmatch(s) and 5 <= len(s.split()) <= 14}
    return sorted(out)


def plan(split: str, count: int, prompts: list[str], variants: list[str], flite_fraction: float,
         rng: np.random.Generator, extra_prompts: Sequence[str] = (), extra_fraction: float = 0.0) -> list[Utterance]:
    """Draw `count` utterances of `split`: prompt, engine, voice, accent, pitch, speed, augmentation
    (an `extra_fraction` of the prompts from `extra_prompts`)."""
    mine = [v for v in variants if variant_split(v) == split]
    accents = [a for a in ACCENTS if a not in TEST_ONLY_ACCENTS]
    flite = [v for v, (_, s) in FLITE_VOICES.items() if s == split]
    out = []
    for i in range(count):
        source = extra_prompts if extra_prompts and rng.random() < extra_fraction else prompts
        text = source[int(rng.integers(len(source)))]
        augment = ""
        if split == "train":
            u = rng.random()
            augment = "bandlimit8k" if u < 0.2 else "noise" if u < 0.3 else ""
        seed = int(rng.integers(2**31))
        key = f"{split}-{i:07d}"
        if flite and rng.random() < flite_fraction:
            voice = str(rng.choice(flite))
            out.append(Utterance(key, text, "flite", FLITE_VOICES[voice][0], voice, 0,
                                 round(float(rng.uniform(0.85, 1.2)), 2), augment, seed))
        else:
            # half of the test utterances speak a test-only accent, so every test set has them
            pool = TEST_ONLY_ACCENTS if split == "test" and i % 2 == 0 else accents
            out.append(Utterance(key, text, "espeak-ng", str(rng.choice(pool)), str(rng.choice(mine)),
                                 int(rng.integers(25, 76)), int(rng.integers(130, 201)), augment, seed))
    return out


# ----------------------------------------------------------------------------------- synthesis

class _Espeak:
    """libespeak-ng in synchronous mode: `synth` returns one utterance's int16 samples."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.rate = self.lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
        if self.rate <= 0:
            raise OSError("espeak_Initialize failed")
        self.chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(self._on_audio)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, count, events) -> int:  # noqa: ANN001 - ctypes callback
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synth(self, text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
        self.chunks = []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice}")
        self.lib.espeak_SetParameter(1, int(speed), 0)  # espeakRATE
        self.lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


def _espeak_cli(text: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True).stdout
    data, sr = sf.read(io.BytesIO(wav), dtype="int16")
    return data, sr


def _flite(text: str, voice: str, stretch: float) -> tuple[np.ndarray, int]:
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "u.wav")
        subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text, "-o", path],
                       capture_output=True, check=True)
        data, sr = sf.read(path, dtype="int16")
    return data, sr


_ENGINE: _Espeak | None = None


def _worker_init() -> None:
    global _ENGINE
    try:
        _ENGINE = _Espeak()
    except OSError:
        _ENGINE = None  # no libespeak-ng: fall back to one CLI call per utterance


def _to_16k(wave: np.ndarray, sr: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    x = wave.astype(np.float32) / 32768.0
    if sr != SAMPLE_RATE:
        g = gcd(SAMPLE_RATE, sr)
        x = resample_poly(x, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return x


def _augment(x: np.ndarray, kind: str, seed: int) -> np.ndarray:
    from scipy.signal import resample_poly

    rng = np.random.default_rng(seed)
    if kind == "bandlimit8k":  # telephone-like: through 8 kHz and back
        x = resample_poly(resample_poly(x, 1, 2), 2, 1)[: len(x)].astype(np.float32)
    elif kind == "noise":
        snr_db = rng.uniform(15, 30)
        power = float(np.mean(x**2)) + 1e-12
        x = x + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), size=x.shape).astype(np.float32)
    return x


def synthesize(u: Utterance) -> np.ndarray:
    """One utterance as float32 mono at 16 kHz (in a pool worker or the caller's process)."""
    if u.engine == "flite":
        wave, sr = _flite(u.text, u.voice, u.speed)
    else:
        voice = f"{_LIB_VOICE.get(u.accent, u.accent)}+{u.voice}"
        if _ENGINE is not None:
            wave, sr = _ENGINE.synth(u.text, voice, u.pitch, int(u.speed)), _ENGINE.rate
        else:
            wave, sr = _espeak_cli(u.text, voice, u.pitch, int(u.speed))
    if wave.size == 0:
        raise RuntimeError(f"{u.engine} produced no audio for {u.key} ({u.voice})")
    x = _augment(_to_16k(wave, sr), u.augment, u.seed)
    return np.clip(x, -1.0, 1.0)


def _synthesize_batch(batch: list[Utterance]) -> list[tuple[Utterance, bytes, float]]:
    import soundfile as sf

    out = []
    for u in batch:
        x = synthesize(u)
        buf = io.BytesIO()
        sf.write(buf, x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        out.append((u, buf.getvalue(), len(x) / SAMPLE_RATE))
    return out


def synthesized_samples(plan_: list[Utterance], workers: int, batch: int = 64,
                        seconds: dict | None = None) -> Iterator[dict]:
    """Samples in plan order; each batch of `batch` utterances runs in a fresh forked process.

    Fresh, because libespeak-ng keeps synthesis state between utterances (the same sentence twice
    in one process gives slightly different audio): a new engine per batch makes every utterance a
    pure function of its batch, so builds are reproducible. Fork start-up (~10 ms) is negligible
    next to a batch (~0.6 s of synthesis).
    """
    import multiprocessing

    import scipy.signal  # noqa: F401 - imported once here: forked workers inherit it (it is slow to import)
    import soundfile  # noqa: F401

    batches = [plan_[i:i + batch] for i in range(0, len(plan_), batch)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(max(1, workers), initializer=_worker_init, maxtasksperchild=1) as pool:
        for done in pool.imap(_synthesize_batch, batches, chunksize=1):
            for u, flac, secs in done:
                if seconds is not None:
                    seconds["total"] = seconds.get("total", 0.0) + secs
                speaker = f"espeak-ng:{u.accent}+{u.voice}" if u.engine == "espeak-ng" else f"flite:{u.voice.removesuffix('16')}"
                yield {"__key__": u.key, "flac": flac, "json": {
                    "text": u.text, "voice": u.voice, "accent": u.accent, "engine": u.engine, "speaker": speaker,
                    "pitch": u.pitch, "speed": u.speed, "augment": u.augment, "seconds": round(secs, 3)}}


# ----------------------------------------------------------------------------------------- build

def build(out_dir: Path, *, preset: str, seed: int, cache: Path) -> dict:
    """Build speech shards for `preset` into `out_dir`; return the manifest dict."""
    from data.debian import fetch_debian, record_system_package
    from data.shards import read_manifest, write_manifest, write_shards
    from data.text_sources import harvard_sentences

    from data.build_images import sources

    if preset not in PRESETS:
        raise ValueError(f"unknown speech preset {preset!r} (have {', '.join(PRESETS)})")
    cfg = PRESETS[preset]
    out_dir = Path(out_dir)
    packages = ["r-cran-stringr"] + (["r-cran-janeaustenr", "r-cran-tokenizers"] if cfg.novel_fraction else [])
    for package in packages:
        fetch_debian(package, cache)
    prompts = prompt_splits(harvard_sentences(cache))
    novels = novel_sentences(cache, seed) if cfg.novel_fraction else []
    variants = espeak_variants()
    splits, stats = {}, {}
    for index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 200 + index])
        utterances = plan(split, cfg.utterances[split], prompts[split], variants, cfg.flite_fraction, rng,
                          novels if split == "train" else [], cfg.novel_fraction)
        seconds: dict = {}
        splits[split] = write_shards(synthesized_samples(utterances, cfg.workers, seconds=seconds), out_dir, split,
                                     max_size=64 << 20, max_count=5000)
        stats[split] = {"hours": round(seconds.get("total", 0.0) / 3600, 4),
                        "prompts": len(set(u.text for u in utterances)),
                        "speakers": len(set((u.engine, u.accent, u.voice.removesuffix("16")) for u in utterances)),
                        "voices": sorted(set(u.voice for u in utterances)),
                        "accents": sorted(set(u.accent for u in utterances))}
    system = [record_system_package(p, cache) for p in ("espeak-ng", "flite")]
    extra = {"preset": preset, "seed": seed, "sample_rate": SAMPLE_RATE, "stats": stats,
             "split_rules": {"prompts": "Harvard lists by stable_fraction('harvard', list): <0.10 test, <0.17 "
                                        "validation", "variants": "stable_fraction('variant', v): <0.15 test, "
                                        "<0.25 validation", "test_only_accents": list(TEST_ONLY_ACCENTS),
                             "flite": {v: s for v, (_, s) in FLITE_VOICES.items()},
                             "novel_sentences": f"{cfg.novel_fraction:.0%} of train utterances, train-split "
                                                "novels only"}}
    srcs = sources(cache, packages) + [{k: r[k] for k in ("name", "version", "licence")} for r in system]
    write_manifest(out_dir, kind="speech", splits=splits, sources=srcs, extra=extra)
    return read_manifest(out_dir)
