"""Language identification with `langid` (Lui & Baldwin 2012; its model ships inside the PyPI
package): the paper uses fastText LID over 176 languages [Llama 3 §3.1.1]; langid covers 97.

`identify_batch` runs langid's own feature extractor per document and its naive-Bayes product as
one float32 matrix product for the whole batch (langid's per-document `np.dot` of a uint32 vector
is ~100× slower). A document is classified on its first `max_chars` characters.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["identify", "identify_batch"]


@lru_cache(maxsize=1)
def _identifier():
    from langid.langid import LanguageIdentifier, model

    ident = LanguageIdentifier.from_modelstring(model, norm_probs=True)
    return ident, np.ascontiguousarray(ident.nb_ptc, dtype=np.float32), ident.nb_pc.astype(np.float64)


def identify_batch(texts: list[str], *, max_chars: int = 2000, chunk: int = 512) -> list[tuple[str, float]]:
    """(ISO 639-1 language, probability) of each text."""
    ident, ptc, pc = _identifier()
    out: list[tuple[str, float]] = []
    for start in range(0, len(texts), chunk):
        fv = np.stack([ident.instance2fv(t[:max_chars]) for t in texts[start:start + chunk]]).astype(np.float32)
        logp = (fv @ ptc).astype(np.float64) + pc
        logp -= logp.max(axis=1, keepdims=True)
        probs = np.exp(logp)
        probs /= probs.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        out.extend((str(ident.nb_classes[b]), float(probs[i, b])) for i, b in enumerate(best))
    return out


def identify(text: str, *, max_chars: int = 2000) -> tuple[str, float]:
    return identify_batch([text], max_chars=max_chars)[0]
