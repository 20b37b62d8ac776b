"""Multi-head self-attention written out: softmax(Q K^T / sqrt(d_k)) V, with a KV cache.

Shapes: B batch, T (Tq, Tk) sequence, H heads, D head dim. Masks are boolean, True = attend,
broadcastable to (B, H, Tq, Tk).
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import DTypeLike

from bigmodel_jax.errors import UserInputError

ATTENTION_IMPLS = ('explicit', 'fused')


def check_attention_config(
    num_heads: int, d_model: int, dropout_rate: float, attention_impl: str) -> None:
  """Raises UserInputError for attention settings no MultiHeadSelfAttention can be built from."""
  if num_heads < 1:
    raise UserInputError(f'num_heads={num_heads}: must be >= 1')
  if d_model < 1 or d_model % num_heads:
    raise UserInputError(
        f'd_model={d_model}: must be a positive multiple of num_heads={num_heads}')
  if attention_impl not in ATTENTION_IMPLS:
    raise UserInputError(
        f'attention_impl={attention_impl!r}: choose one of {", ".join(ATTENTION_IMPLS)}')
  if not 0.0 <= dropout_rate < 1.0:
    raise UserInputError(f'attention dropout_rate={dropout_rate}: must be in [0, 1)')
  if attention_impl == 'fused' and dropout_rate > 0.0:
    # jax.nn.dot_product_attention has no dropout on the attention weights.
    raise UserInputError(
        f"attention dropout_rate={dropout_rate}: attention_impl='fused' allows only 0.0")


def attention_weights(
    query: jax.Array, key: jax.Array, *, mask: jax.Array | None = None) -> jax.Array:
  """softmax(Q K^T / sqrt(d_k)) as float32 of shape (B, H, Tq, Tk)."""
  logits = jnp.einsum('bqhd,bkhd->bhqk', query, key, preferred_element_type=jnp.float32)
  logits = logits / math.sqrt(query.shape[-1])
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  return jax.nn.softmax(logits, axis=-1)


def dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    deterministic: bool = True,
    dtype: DTypeLike | None = None,
) -> jax.Array:
  """Attention output (B, Tq, H, D) in `dtype` (default: the value's dtype)."""
  dtype = value.dtype if dtype is None else dtype
  weights = attention_weights(query, key, mask=mask)
  if not deterministic and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
  return jnp.einsum('bhqk,bkhd->bqhd', weights.astype(dtype), value.astype(dtype))


class MultiHeadSelfAttention(nn.Module):
  """Self-attention over `d_model` features split into `num_heads` heads.

  In decode mode, keys and values live in the 'cache' collection with a fixed size
  (B, max_len, H, D) set by the input length at init (see `transformer.init_cache`). A call with
  L >= 1 tokens writes them at `cache_index` and attends causally over positions
  < cache_index + L, so a prompt is prefilled in one call and then one token goes per call, with
  the same shapes every step. Writing past max_len is not detected (shapes are static); callers
  keep cache_index + L <= max_len.
  """

  num_heads: int
  d_model: int
  dropout_rate: float = 0.0
  dtype: DTypeLike = jnp.float32
  attention_impl: str = 'explicit'

  def __post_init__(self):
    check_attention_config(self.num_heads, self.d_model, self.dropout_rate, self.attention_impl)
    super().__post_init__()

  @nn.compact
  def __call__(
      self,
      inputs: jax.Array,
      *,
      mask: jax.Array | None = None,
      train: bool = False,
      decode: bool = False,
  ) -> jax.Array:
    """Maps (B, T, F) to (B, T, d_model); `mask` is for non-decode calls only."""
    head_dim = self.d_model // self.num_heads
    project = functools.partial(
        nn.DenseGeneral, features=(self.num_heads, head_dim), dtype=self.dtype,
        param_dtype=jnp.float32)
    query = project(name='query')(inputs)
    key = project(name='key')(inputs)
    value = project(name='value')(inputs)

    if decode:
      if mask is not None:
        raise ValueError('decode mode builds its own causal mask over the cache; pass mask=None')
      key, value, mask = self._update_cache(key, value)

    if self.attention_impl == 'explicit':
      dropout_rng = None
      if train and self.dropout_rate > 0.0:
        dropout_rng = self.make_rng('dropout')
      out = dot_product_attention(
          query, key, value, mask=mask, dropout_rate=self.dropout_rate, dropout_rng=dropout_rng,
          deterministic=not train, dtype=self.dtype)
    else:
      out = jax.nn.dot_product_attention(query, key, value, mask=mask)

    if self.is_mutable_collection('intermediates'):
      # Recomputed here rather than returned by the kernel so both impls can offer the pattern;
      # under jit XLA shares it with the explicit path's own computation.
      self.sow('intermediates', 'attention_weights', attention_weights(query, key, mask=mask))

    return nn.DenseGeneral(
        self.d_model, axis=(-2, -1), dtype=self.dtype, param_dtype=jnp.float32, name='out')(out)

  def _update_cache(
      self, key: jax.Array, value: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Writes this chunk into the cache; returns the full cached keys, values and their mask."""
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros, value.shape, value.dtype)
    cache_index = self.variable('cache', 'cache_index', lambda: jnp.zeros((), jnp.int32))
    start = cache_index.value
    chunk_len = key.shape[1]
    key = lax.dynamic_update_slice(cached_key.value, key, (0, start, 0, 0))
    value = lax.dynamic_update_slice(cached_value.value, value, (0, start, 0, 0))
    cached_key.value, cached_value.value = key, value
    cache_index.value = start + chunk_len
    # Query i sits at position start + i and sees every cached position up to its own; the
    # unwritten (zero) slots beyond it are masked out.
    query_positions = start + jnp.arange(chunk_len)
    key_positions = jnp.arange(key.shape[1])
    mask = key_positions[None, :] <= query_positions[:, None]
    return key, value, mask[None, None]
