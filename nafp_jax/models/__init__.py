"""Encoders: the paper's attention CNN and the NAFP baseline, built from a config."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from nafp_jax.models.conv import PLAIN, ConvLowering
from nafp_jax.models.encoder import AttentionEncoder
from nafp_jax.models.input_norm import input_norm_from_config
from nafp_jax.models.nafp_baseline import NafpEncoder

# float64 (with jax_enable_x64) is for numerical checks, e.g. tests/integration/test_multiprocess.py.
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16,
           "float64": jnp.float64}


def create_model(model_config: ml_collections.ConfigDict,
                 lowering: ConvLowering = PLAIN) -> nn.Module:
  """Build the encoder named by `model_config.name` ('attention' or 'nafp').

  `lowering` picks how convolutions are lowered (models/conv.py): it
  changes speed, not the function or the parameters, so it is not in the config.
  """
  dtype = _DTYPES[model_config.get("dtype", "float32")]
  if model_config.name == "attention":
    return AttentionEncoder(widths=tuple(model_config.widths),
                            embedding_dim=model_config.embedding_dim,
                            head_hidden=model_config.head_hidden,
                            attention_scale=model_config.attention_scale,
                            attention_init_std=model_config.get("attention_init_std", 1.0),
                            dropout_rate=model_config.get("dropout_rate", 0.0),
                            dtype=dtype, input_norm=input_norm_from_config(model_config),
                            lowering=lowering)
  if model_config.name == "nafp":
    return NafpEncoder(widths=tuple(model_config.widths),
                       strides_f=tuple(model_config.strides_f),
                       strides_t=tuple(model_config.strides_t),
                       embedding_dim=model_config.embedding_dim,
                       head_hidden=model_config.head_hidden,
                       dtype=dtype, input_norm=input_norm_from_config(model_config),
                       lowering=lowering)
  raise ValueError(f"unknown model name {model_config.name!r} (expected 'attention' or 'nafp')")


def embed_with_attention(model: nn.Module, variables: dict, x) -> tuple:
  """Embeddings plus every attention mask, in inference mode (for plots and debugging).

  Returns (embeddings [B, d], {module path: mask [B, F, T, C]}); the masks are the
  S * a_spect (outer) a_temp maps each spectral-temporal attention module applied.
  """
  import flax  # pylint: disable=g-import-not-at-top
  emb, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  flat = flax.traverse_util.flatten_dict(state.get("intermediates", {}), sep="/")
  masks = {k.rsplit("/", 1)[0]: v[0] for k, v in flat.items()}
  return emb, masks


__all__ = ["AttentionEncoder", "NafpEncoder", "create_model", "embed_with_attention"]
