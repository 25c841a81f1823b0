"""Hugging Face interop: export a herd checkpoint as a `LlamaForCausalLM` directory, import one back.

herd already rotates the two *halves* of each head (HF's `rotate_half`), so q/k weights map
one to one; only the key names differ. Meta's original checkpoints rotate *adjacent pairs*
instead; `from_meta_interleaved` permutes their q/k rows once into herd's layout.

    export_hf("runs/demo/checkpoints/step_00000100", "out/hf")   # → AutoModelForCausalLM loads it
    model = import_hf("out/hf")                                  # → herd Transformer
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import Tensor

from text.config import RopeScaling, TextConfig
from text.model import Transformer

# herd (Meta) key → HF key; `{}` is the layer index.
_LAYER_KEYS = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_KEYS = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_HERD_LAYER = re.compile(r"layers\.(\d+)\.(.+)")
_HF_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


def to_hf_state_dict(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """herd/Meta key names → HF `LlamaForCausalLM` key names (same tensors)."""
    out = {}
    for key, value in tensors.items():
        if key in _TOP_KEYS:
            out[_TOP_KEYS[key]] = value
        elif (m := _HERD_LAYER.fullmatch(key)) and m.group(2) in _LAYER_KEYS:
            out[f"model.layers.{m.group(1)}.{_LAYER_KEYS[m.group(2)]}"] = value
        else:
            raise KeyError(f"no Hugging Face name for herd tensor {key!r}")
    return out


def from_hf_state_dict(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """HF `LlamaForCausalLM` key names → herd key names (same tensors)."""
    top = {hf: herd for herd, hf in _TOP_KEYS.items()}
    layer = {hf: herd for herd, hf in _LAYER_KEYS.items()}
    out = {}
    for key, value in tensors.items():
        if key in top:
            out[top[key]] = value
        elif (m := _HF_LAYER.fullmatch(key)) and m.group(2) in layer:
            out[f"layers.{m.group(1)}.{layer[m.group(2)]}"] = value
        elif not key.endswith("rotary_emb.inv_freq"):  # a buffer some old exports saved
            raise KeyError(f"unknown Hugging Face Llama tensor {key!r}")
    return out


def from_meta_interleaved(tensors: dict[str, Tensor], config: TextConfig) -> dict[str, Tensor]:
    """Permute q/k rows of a checkpoint in Meta's adjacent-pairs RoPE layout (llama-models
    `consolidated.pth`) into herd's half-split layout; every other tensor is unchanged.

    Within a head, Meta's rows are (pair 0 re, pair 0 im, pair 1 re, …); herd wants all the
    first elements, then all the second ones — the permutation HF's conversion script applies.
    """
    def permute(w: Tensor, heads: int) -> Tensor:
        return w.view(heads, config.head_dim // 2, 2, -1).transpose(1, 2).reshape(w.shape)

    out = dict(tensors)
    for key, value in tensors.items():
        if key.endswith("attention.wq.weight"):
            out[key] = permute(value, config.n_heads)
        elif key.endswith("attention.wk.weight"):
            out[key] = permute(value, config.n_kv_heads)
    return out


def special_token_ids(vocab_size: int) -> dict[str, int]:
    """The Llama 3 special ids of a herd vocabulary: the 256 specials are its last rows, in
    Llama 3 order (docs/internals.md "Token ids"; the tokenizer follows the same layout)."""
    base = vocab_size - 256
    return {"bos": base, "eos": base + 1, "eom": base + 8, "eot": base + 9, "pad": base + 4}


def hf_config(config: TextConfig) -> dict:
    """config.json contents of the `LlamaForCausalLM` equivalent to `config`."""
    ids = special_token_ids(config.vocab_size)
    values = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "intermediate_size": config.ffn_hidden_dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "torch_dtype": "float32",
        "use_cache": True,
    }
    if config.rope_scaling is not None:
        s = config.rope_scaling
        values["rope_scaling"] = {
            "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.original_max_seq_len,
        }
    return values


def config_from_hf(values: dict) -> TextConfig:
    """The herd TextConfig of an HF Llama config.json (transformers 4.x or 5.x layout)."""
    if values.get("model_type", "llama") != "llama":
        raise ValueError(f"expected a llama config, found model_type {values.get('model_type')!r}")
    rope = dict(values.get("rope_parameters") or {})
    legacy = values.get("rope_scaling") or {}
    rope.update({k: v for k, v in legacy.items() if k not in rope})
    theta = values.get("rope_theta", rope.get("rope_theta", 10_000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise ValueError(f"unsupported rope_type {rope_type!r} (herd knows default and llama3)")
    scaling = None
    if rope_type == "llama3":
        scaling = RopeScaling(factor=rope["factor"], low_freq_factor=rope["low_freq_factor"],
                              high_freq_factor=rope["high_freq_factor"],
                              original_max_seq_len=rope["original_max_position_embeddings"])
    dim, heads = values["hidden_size"], values["num_attention_heads"]
    if values.get("head_dim", dim // heads) != dim // heads:
        raise ValueError(f"head_dim {values['head_dim']} ≠ hidden_size / heads; herd ties them")
    config = TextConfig(
        dim=dim, n_layers=values["num_hidden_layers"], n_heads=heads,
        n_kv_heads=values.get("num_key_value_heads") or heads, vocab_size=values["vocab_size"],
        norm_eps=values.get("rms_norm_eps", 1e-5), rope_theta=float(theta), rope_scaling=scaling,
        max_seq_len=values.get("max_position_embeddings", 8192),
        tie_embeddings=bool(values.get("tie_word_embeddings", False)),
    )
    return _with_ffn_width(config, values["intermediate_size"])


def _with_ffn_width(config: TextConfig, width: int) -> TextConfig:
    """Choose multiple_of / ffn_dim_multiplier so that config.ffn_hidden_dim == width."""
    import dataclasses

    for multiplier in (None, 1.3, 1.2, 1.0):
        for multiple_of in (1024, 4096, 256, 128, 64, 32, 16, 8, 1):
            candidate = dataclasses.replace(config, ffn_dim_multiplier=multiplier, multiple_of=multiple_of)
            if candidate.ffn_hidden_dim == width:
                return candidate
    # Any width is reachable: multiplier = width / base rounds up to `width` with multiple_of 1.
    base = int(2 * (4 * config.dim) / 3)
    for delta in (0.0, 1e-9, 1e-7):
        candidate = dataclasses.replace(config, ffn_dim_multiplier=width / base + delta, multiple_of=1)
        if candidate.ffn_hidden_dim == width:
            return candidate
    raise ValueError(f"cannot express SwiGLU width {width} for dim {config.dim}")


def export_hf(checkpoint_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a `LlamaForCausalLM` directory (safetensors, config.json, generation_config.json and
    the tokenizer files with the chat template) for the text model of a herd checkpoint."""
    from safetensors.torch import save_file

    from train.checkpoint import TOKENIZER_FILE, load_text_model

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    model = load_text_model(checkpoint_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = to_hf_state_dict(model.state_dict())  # a tied model has no output.weight
    save_file({k: v.contiguous() for k, v in tensors.items()}, out_dir / "model.safetensors",
              metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(model.config), indent=2))
    ids = special_token_ids(model.config.vocab_size)
    generation = {"bos_token_id": ids["bos"], "eos_token_id": [ids["eos"], ids["eom"], ids["eot"]],
                  "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2))
    tokenizer_json = checkpoint_dir / TOKENIZER_FILE
    if tokenizer_json.is_file():
        from text.tokenizer import save_hf_tokenizer_files

        save_hf_tokenizer_files(tokenizer_json, out_dir, model_max_length=model.config.max_seq_len)
    return out_dir


def import_hf(hf_dir: str | Path, *, device: str | torch.device = "cpu") -> Transformer:
    """Load an HF Llama directory (config.json + *.safetensors, sharded or not) as a herd model."""
    from safetensors.torch import load_file

    hf_dir = Path(hf_dir)
    config_file = hf_dir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{hf_dir} has no config.json")
    config = config_from_hf(json.loads(config_file.read_text()))
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{hf_dir} has no *.safetensors weights")
    tensors: dict[str, Tensor] = {}
    for f in files:
        tensors.update(load_file(f))
    state = from_hf_state_dict(tensors)
    if config.tie_embeddings:
        state.pop("output.weight", None)  # some exports store the tied table twice
    with torch.device("meta"):
        model = Transformer(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.rope.reset_tables()
    return model.to(device).eval()


__all__ = ["export_hf", "import_hf", "to_hf_state_dict", "from_hf_state_dict", "from_meta_interleaved",
           "hf_config", "config_from_hf", "special_token_ids"]
