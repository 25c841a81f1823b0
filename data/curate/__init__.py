"""Text curation as in Llama 3 §3.1: dedup, heuristic filters, PII scrubbing, language ID, quality."""

from data.curate.pipeline import FILTERS, CurationConfig, curate_dataset

__all__ = ["CurationConfig", "FILTERS", "curate_dataset"]
