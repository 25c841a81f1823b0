"""herd fused image model ⇄ Hugging Face `MllamaForConditionalGeneration` (llama3-spec §7.3).

Every tensor maps one-to-one, which is the check that herd's layout is Llama 3.2 Vision's:

    hf_config = mllama_config(fused)                         # kwargs for transformers.MllamaConfig
    hf_state = to_mllama_state_dict(fused.state_dict(), fused)
    herd_state = from_mllama_state_dict(hf_state, fused)     # the inverse

- LM layer i and the cross-attention block before it become entries of HF's one interleaved
  `layers` list (cross layer first), so herd's schedule [1, 3] on 4 layers is HF's
  `cross_attention_layers` [1, 4].
- `tok_embeddings` (V rows) and `learnable_embedding` (8 rows) are HF's single `embed_tokens`
  table of V + 8 rows; `output` is `lm_head` (V rows).
- RoPE needs no permutation: herd rotates half-split pairs, as HF does.

Known behavioural differences (weights are identical; outputs differ only in these cases):
- the HF encoder pads each tile's tokens to a multiple of 8 and lets real tokens attend to that
  padding and to padding tiles (herd masks both, so padding pixels cannot leak into real tiles);
- HF does not zero the cross-attention output of text rows that see no image (herd zeroes both
  the attention and MLP outputs of such rows, as llama-models does);
- transformers 5.x takes `intermediate_layers_indices` as the *output* of layer i; the
  reference (llama-models, herd) takes the state *entering* layer i. `mllama_config` writes the
  reference indices. tests/adapters/test_convert_mllama.py shows parity once these are aligned.
"""

from __future__ import annotations

import torch
from torch import Tensor

from adapters.fusion import FusionModel

_VISION_LAYER = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm",
                 "attn.wq": "self_attn.q_proj", "attn.wk": "self_attn.k_proj",
                 "attn.wv": "self_attn.v_proj", "attn.wo": "self_attn.o_proj",
                 "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
                 "attn_gate.gate": "gate_attn", "mlp_gate.gate": "gate_ffn"}
_VISION_TOP = {"patch_embed.weight": "patch_embedding.weight",
               "class_embedding": "class_embedding",
               "pre_tile_embedding.embedding.weight": "pre_tile_positional_embedding.embedding.weight",
               "pre_tile_embedding.gate": "pre_tile_positional_embedding.gate",
               "post_tile_embedding.embedding.weight": "post_tile_positional_embedding.embedding.weight",
               "post_tile_embedding.gate": "post_tile_positional_embedding.gate",
               "position_embedding.embedding": "gated_positional_embedding.embedding",
               "position_embedding.tile_embedding.embedding.weight":
                   "gated_positional_embedding.tile_embedding.weight",
               "position_embedding.tile_embedding.gate": "gated_positional_embedding.gate",
               "ln_pre.weight": "layernorm_pre.weight", "ln_pre.bias": "layernorm_pre.bias",
               "ln_post.weight": "layernorm_post.weight", "ln_post.bias": "layernorm_post.bias"}
_TEXT_LAYER = {"attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
               "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
               "feed_forward.w1": "mlp.gate_proj", "feed_forward.w3": "mlp.up_proj",
               "feed_forward.w2": "mlp.down_proj"}
_CROSS_LAYER = {"attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                "attention.wq": "cross_attn.q_proj", "attention.wk": "cross_attn.k_proj",
                "attention.wv": "cross_attn.v_proj", "attention.wo": "cross_attn.o_proj",
                "attention.q_norm": "cross_attn.q_norm", "attention.k_norm": "cross_attn.k_norm",
                "feed_forward.w1": "mlp.gate_proj", "feed_forward.w3": "mlp.up_proj",
                "feed_forward.w2": "mlp.down_proj",
                "attn_gate.scale": "cross_attn_attn_gate", "ffn_gate.scale": "cross_attn_mlp_gate"}
_EMBED = "model.language_model.embed_tokens.weight"


def interleaved_indices(model: FusionModel) -> tuple[dict[int, int], dict[int, int]]:
    """({LM layer i: HF index}, {cross block before layer i: HF index})."""
    lm, cross, cursor = {}, {}, 0
    for i in range(model.config.n_layers):
        if i in model.schedule:
            cross[i], cursor = cursor, cursor + 1
        lm[i], cursor = cursor, cursor + 1
    return lm, cross


def _sub(key: str, table: dict[str, str]) -> str | None:
    """Rename the longest matching prefix of key by table (keeping '.weight'/'.bias' suffixes)."""
    for src in sorted(table, key=len, reverse=True):
        if key == src or key.startswith(src + "."):
            return table[src] + key[len(src):]
    return None


def key_map(model: FusionModel) -> dict[str, str]:
    """herd state-dict key → HF key, for every key except the two embedding tables."""
    lm_index, cross_index = interleaved_indices(model)
    out = {}
    for key in model.state_dict():
        head, _, rest = key.partition(".")
        hf = None
        if head == "vision_encoder":
            group, _, tail = rest.partition(".")
            if group in ("layers", "global_layers"):
                n, _, name = tail.partition(".")
                stack = "transformer" if group == "layers" else "global_transformer"
                hf = f"model.vision_model.{stack}.layers.{n}.{_sub(name, _VISION_LAYER)}"
            else:
                hf = f"model.vision_model.{_VISION_TOP[rest]}"
        elif head == "vision_projection":
            hf = "model.multi_modal_projector." + rest.removeprefix("proj.")
        elif head in ("layers", "cross_attention_layers"):
            n, _, name = rest.partition(".")
            table, index = ((_TEXT_LAYER, lm_index) if head == "layers" else (_CROSS_LAYER, cross_index))
            hf = f"model.language_model.layers.{index[int(n)]}.{_sub(name, table)}"
        elif key == "norm.weight":
            hf = "model.language_model.norm.weight"
        elif key == "output.weight":
            hf = "lm_head.weight"
        elif key in ("tok_embeddings.weight", "learnable_embedding.weight"):
            continue
        if hf is None or "None" in hf:
            raise KeyError(f"no Mllama name for herd key {key!r}")
        out[key] = hf
    return out


def to_mllama_state_dict(state: dict[str, Tensor], model: FusionModel) -> dict[str, Tensor]:
    """A herd fused-model state dict → MllamaForConditionalGeneration's."""
    out = {hf: state[k] for k, hf in key_map(model).items()}
    out[_EMBED] = torch.cat([state["tok_embeddings.weight"], state["learnable_embedding.weight"]])
    if "lm_head.weight" not in out:  # tied LM: one stored table
        out["lm_head.weight"] = state["tok_embeddings.weight"]
    return out


def from_mllama_state_dict(hf_state: dict[str, Tensor], model: FusionModel) -> dict[str, Tensor]:
    """MllamaForConditionalGeneration's state dict → herd's (the inverse of the above)."""
    V = model.config.vocab_size
    out = {k: hf_state[hf] for k, hf in key_map(model).items()}
    out["tok_embeddings.weight"] = hf_state[_EMBED][:V]
    out["learnable_embedding.weight"] = hf_state[_EMBED][V:]
    return out


def mllama_config(model: FusionModel) -> dict:
    """Keyword arguments for `transformers.MllamaConfig` describing `model` exactly."""
    t, v = model.config, model.vision_encoder.config
    _, cross_index = interleaved_indices(model)
    text = dict(vocab_size=t.vocab_size, hidden_size=t.dim, intermediate_size=t.ffn_hidden_dim,
                num_hidden_layers=t.n_layers + len(model.schedule),
                num_attention_heads=t.n_heads, num_key_value_heads=t.n_kv_heads,
                rms_norm_eps=t.norm_eps, max_position_embeddings=t.max_seq_len,
                cross_attention_layers=sorted(cross_index.values()),
                tie_word_embeddings=t.tie_embeddings,
                bos_token_id=t.vocab_size - 256, eos_token_id=t.vocab_size - 255,
                pad_token_id=t.vocab_size - 252)
    rope = {"rope_type": "default", "rope_theta": t.rope_theta}
    if t.rope_scaling is not None:
        s = t.rope_scaling
        rope = {"rope_type": "llama3", "rope_theta": t.rope_theta, "factor": s.factor,
                "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_seq_len}
    text["rope_parameters"] = rope
    vision = dict(hidden_size=v.width, num_hidden_layers=v.n_layers,
                  num_global_layers=v.n_global_layers, attention_heads=v.n_heads,
                  intermediate_size=v.mlp_dim, vision_output_dim=v.output_dim,
                  image_size=v.tile_size, patch_size=v.patch_size, max_num_tiles=v.max_tiles,
                  norm_eps=v.norm_eps, intermediate_layers_indices=list(v.intermediate_layers),
                  supported_aspect_ratios=[list(r) for r in v.aspect_ratios])
    return {"text_config": text, "vision_config": vision, "image_token_index": t.vocab_size}


__all__ = ["key_map", "interleaved_indices", "to_mllama_state_dict", "from_mllama_state_dict",
           "mllama_config"]
