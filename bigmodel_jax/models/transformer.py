"""Decoder-only transformer language model and an encoder-style classifier sharing its blocks.

Pre-LayerNorm blocks (attention, then a GELU MLP, each added to the residual stream), learned
token and position embeddings, a final LayerNorm. Read `Block`, then `TransformerLM`.
"""

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.attention import MultiHeadSelfAttention, check_attention_config

# GPT-2's initialisation: with unit-variance embeddings a tied head would start with huge logits.
_embedding_init = nn.initializers.normal(stddev=0.02)


def _check_config(model: 'TransformerLM | TransformerClassifier') -> None:
  """Raises UserInputError for settings shared by both transformer models."""
  for field in ('vocab_size', 'max_len', 'num_layers', 'mlp_ratio'):
    if getattr(model, field) < 1:
      raise UserInputError(f'{field}={getattr(model, field)}: must be >= 1')
  if not 0.0 <= model.dropout_rate < 1.0:
    raise UserInputError(f'dropout_rate={model.dropout_rate}: must be in [0, 1)')
  check_attention_config(
      model.num_heads, model.d_model, model.attention_dropout_rate, model.attention_impl)


def _check_length(tokens: jax.Array, max_len: int) -> None:
  if tokens.shape[1] > max_len:
    raise UserInputError(f'sequence length {tokens.shape[1]} exceeds the model max_len={max_len}')


class Block(nn.Module):
  """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x))."""

  num_heads: int
  d_model: int
  mlp_ratio: int
  dropout_rate: float
  attention_dropout_rate: float
  dtype: DTypeLike
  attention_impl: str

  @nn.compact
  def __call__(
      self, x: jax.Array, *, mask: jax.Array | None, train: bool, decode: bool = False,
  ) -> jax.Array:
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    layer_norm = functools.partial(nn.LayerNorm, dtype=self.dtype, param_dtype=jnp.float32)

    h = layer_norm(name='attention_norm')(x)
    h = MultiHeadSelfAttention(
        self.num_heads, self.d_model, self.attention_dropout_rate, self.dtype,
        self.attention_impl, name='attention')(h, mask=mask, train=train, decode=decode)
    x = x + nn.Dropout(self.dropout_rate)(h, deterministic=not train)

    h = layer_norm(name='mlp_norm')(x)
    h = dense(self.mlp_ratio * self.d_model, name='mlp_in')(h)
    h = nn.gelu(h)
    h = dense(self.d_model, name='mlp_out')(h)
    return x + nn.Dropout(self.dropout_rate)(h, deterministic=not train)


def _embed_and_encode(model: 'TransformerLM | TransformerClassifier', tokens: jax.Array,
                      positions: jax.Array, mask: jax.Array | None, *, train: bool,
                      decode: bool = False) -> tuple[jax.Array, nn.Embed]:
  """Token + position embeddings, the blocks and the final LayerNorm: the trunk both models share.

  Called inside the model's compact `__call__`, so the layers it creates are the model's own
  (same parameter names as if written inline). Returns the hidden states and the token
  embedding (for a tied output head).
  """
  embed = functools.partial(
      nn.Embed, features=model.d_model, embedding_init=_embedding_init, dtype=model.dtype,
      param_dtype=jnp.float32)
  token_embed = embed(model.vocab_size, name='token_embed')
  x = token_embed(tokens) + embed(model.max_len, name='position_embed')(positions)
  x = nn.Dropout(model.dropout_rate)(x, deterministic=not train)
  for i in range(model.num_layers):
    x = Block(
        model.num_heads, model.d_model, model.mlp_ratio, model.dropout_rate,
        model.attention_dropout_rate, model.dtype, model.attention_impl,
        name=f'block_{i}')(x, mask=mask, train=train, decode=decode)
  x = nn.LayerNorm(dtype=model.dtype, param_dtype=jnp.float32, name='final_norm')(x)
  return x, token_embed


class TransformerLM(nn.Module):
  """GPT-style language model: int32 tokens (B, T) -> float32 next-token logits (B, T, vocab).

  With decode=True the keys and values of earlier calls come from the 'cache' collection (create
  it with `init_cache`, apply with mutable=['cache']) and positions continue from its index.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('language_modeling',)

  vocab_size: int
  max_len: int
  num_layers: int = 4
  num_heads: int = 4
  d_model: int = 128
  mlp_ratio: int = 4
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  tie_embeddings: bool = True
  dtype: DTypeLike = jnp.float32
  attention_impl: str = 'explicit'

  def __post_init__(self):
    _check_config(self)
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False, decode: bool = False) -> jax.Array:
    length = tokens.shape[1]
    if decode:
      # Causality over the cache is built into the attention layers.
      mask = None
      cache_index = self.variable('cache', 'cache_index', lambda: jnp.zeros((), jnp.int32))
      positions = cache_index.value + jnp.arange(length)
      cache_index.value = cache_index.value + length
    else:
      _check_length(tokens, self.max_len)
      mask = nn.make_causal_mask(tokens, dtype=jnp.bool_)
      positions = jnp.arange(length)

    x, token_embed = _embed_and_encode(self, tokens, positions, mask, train=train, decode=decode)
    if self.tie_embeddings:
      logits = token_embed.attend(x)
    else:
      logits = nn.Dense(
          self.vocab_size, use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
          name='head')(x)
    return logits.astype(jnp.float32)


class TransformerClassifier(nn.Module):
  """Bidirectional encoder over int32 tokens (B, T) -> float32 logits (B, num_outputs).

  Tokens equal to `pad_id` are neither attended to nor pooled, so padding never changes the
  output.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('classification',)

  vocab_size: int
  num_outputs: int
  max_len: int
  num_layers: int = 2
  num_heads: int = 4
  d_model: int = 128
  mlp_ratio: int = 4
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: DTypeLike = jnp.float32
  attention_impl: str = 'explicit'
  pad_id: int = 0

  def __post_init__(self):
    _check_config(self)
    if self.num_outputs < 1:
      raise UserInputError(f'num_outputs={self.num_outputs}: must be >= 1')
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
    _check_length(tokens, self.max_len)
    is_token = tokens != self.pad_id
    mask = is_token[:, None, None, :]

    x, _ = _embed_and_encode(self, tokens, jnp.arange(tokens.shape[1]), mask, train=train)
    weights = is_token[..., None].astype(jnp.float32)
    pooled = (x.astype(jnp.float32) * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)
    logits = nn.Dense(
        self.num_outputs, dtype=self.dtype, param_dtype=jnp.float32, name='head')(pooled)
    return logits.astype(jnp.float32)


def init_cache(model: TransformerLM, batch_size: int) -> dict[str, Any]:
  """An empty KV cache for `batch_size` rows of up to `model.max_len` positions."""
  tokens = jnp.zeros((batch_size, model.max_len), jnp.int32)
  # Only the shapes are needed: eval_shape skips materialising a second set of params.
  shapes = jax.eval_shape(
      functools.partial(model.init, decode=True), jax.random.key(0), tokens)['cache']
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
