"""Caption scores with the COCO reference code (pycocoevalcap): CIDEr-D and BLEU-4 after its PTB
tokenizer (a Java program; `java` must be on PATH), plus exact-match accuracy for templated
references.

    scores = caption_scores(hyps, refs)   # hyps: list[str]; refs: list[list[str]], same order
    # {"CIDEr-D": …, "BLEU-4": …, "exact_match": …, "n": …}
    per_sample = caption_scores(hyps, refs, per_sample=True)["per_sample"]

pycocoevalcap's `Cider` is CIDEr-D (σ = 6 length penalty, clipped n-gram counts, ×10) with
document frequencies taken from the evaluated references, as in the COCO server.
"""

from __future__ import annotations

import re
import string

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer


def ptb_tokenize(captions: dict[int, list[str]]) -> dict[int, list[str]]:
    """{id: [caption, …]} → {id: [tokenized caption, …]} with the COCO PTB tokenizer."""
    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def normalize(text: str) -> str:
    """Lower-case, drop punctuation, collapse whitespace (for exact match)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return re.sub(r"\s+", " ", text).strip()


def exact_match(hyps: list[str], refs: list[list[str]]) -> list[float]:
    """1.0 where the normalised hypothesis equals any normalised reference, else 0.0."""
    return [float(normalize(h) in {normalize(r) for r in rs}) for h, rs in zip(hyps, refs)]


def caption_scores(hyps: list[str], refs: list[list[str]], *, per_sample: bool = False) -> dict:
    """Corpus CIDEr-D and BLEU-4 (pycocoevalcap) and exact-match accuracy of `hyps` against
    `refs` (one list of references per hypothesis). With per_sample, also a list of
    {"CIDEr-D", "BLEU-4", "exact_match"} per sample."""
    if len(hyps) != len(refs) or not hyps:
        raise ValueError(f"need one reference list per hypothesis; got {len(hyps)} and {len(refs)}")
    if any(not rs for rs in refs):
        raise ValueError("every hypothesis needs at least one reference caption")
    res = ptb_tokenize({i: [h] for i, h in enumerate(hyps)})
    gts = ptb_tokenize({i: list(rs) for i, rs in enumerate(refs)})
    cider, cider_each = Cider().compute_score(gts, res)
    bleu, bleu_each = Bleu(4).compute_score(gts, res, verbose=0)
    em = exact_match(hyps, refs)
    out = {"CIDEr-D": float(cider), "BLEU-4": float(bleu[3]), "exact_match": sum(em) / len(em),
           "n": len(hyps)}
    if per_sample:
        out["per_sample"] = [{"CIDEr-D": float(c), "BLEU-4": float(b), "exact_match": e}
                             for c, b, e in zip(cider_each, bleu_each[3], em)]
    return out


__all__ = ["caption_scores", "exact_match", "normalize", "ptb_tokenize"]
