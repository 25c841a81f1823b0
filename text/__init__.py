"""The Llama 3 text model: configuration and presets, the decoder, tokenizer and chat format,
generation, size/FLOP accounting and Hugging Face conversion."""

from text.config import PRESETS, RopeScaling, TextConfig, create_config, list_presets
from text.chat_format import ChatFormat, Message
from text.model import Transformer
from text.tokenizer import Tokenizer, load_tokenizer

__all__ = ["TextConfig", "RopeScaling", "PRESETS", "create_config", "list_presets", "Transformer",
           "Tokenizer", "load_tokenizer", "ChatFormat", "Message"]
