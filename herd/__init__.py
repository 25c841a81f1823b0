"""herd — the Llama 3 multimodal design end to end. The CLI lives in `herd.cli`."""

__version__ = "0.1.0"
