"""Multi-head self-attention written out: softmax(Q K^T / sqrt(d_k)) V, with a KV cache.

Shapes: B batch, T (Tq, Tk) sequence, H heads, D head dim. Masks are boolean, True = attend,
broadcastable to (B, H, Tq, Tk).
"""

import functools
import math
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import DTypeLike

from bigmodel_jax.models import lora
from bigmodel_jax.models.base import config_error

if TYPE_CHECKING:
  from bigmodel_jax.models.transformer import TransformerConfig

ATTENTION_IMPLS = ('explicit', 'fused')


def check_attention_config(config: 'TransformerConfig') -> None:
  """Raises UserInputError for attention settings no MultiHeadSelfAttention can be built from."""
  config.check_positive('num_heads')
  if config.d_model < 1 or config.d_model % config.num_heads:
    raise config_error('d_model', config.d_model,
                       f'must be a positive multiple of num_heads={config.num_heads}')
  if config.attention_impl not in ATTENTION_IMPLS:
    raise config_error('attention_impl', config.attention_impl,
                       f'choose one of {", ".join(ATTENTION_IMPLS)}')
  config.check_positive('causal_block_size')
  config.check_rate('attention_dropout_rate')
  if config.attention_impl == 'fused' and config.attention_dropout_rate > 0.0:
    # jax.nn.dot_product_attention has no dropout on the attention weights.
    raise config_error('attention_dropout_rate', config.attention_dropout_rate,
                       "attention_impl='fused' allows only 0.0")


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


def fused_implementation(device: jax.Device, dtype: DTypeLike, head_dim: int) -> str | None:
  """jax.nn.dot_product_attention's `implementation` for attention_impl='fused' on `device`.

  'cudnn' (cuDNN's flash attention) where it takes the inputs: an NVIDIA GPU, bfloat16 or
  float16, a head dimension that is a multiple of 8 up to 128 (the caller keeps masked calls
  off it). Elsewhere None: XLA's attention, the explicit path's computation.
  """
  if (device.platform == 'gpu' and device.device_kind.startswith('NVIDIA')
      and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)
      and head_dim % 8 == 0 and head_dim <= 128):
    return 'cudnn'
  return None


def causal_mask(num_queries: int, num_keys: int) -> jax.Array:
  """(Tq, Tk): query i attends to keys 0..i only."""
  return jnp.tril(jnp.ones((num_queries, num_keys), jnp.bool_))


def causal_dot_product_attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    *,
    block_size: int,
    mask: jax.Array | None = None,
    dropout_rng: jax.Array | None = None,
    **options,
) -> jax.Array:
  """`dot_product_attention` under the causal mask (and `mask`), without the masked-out blocks.

  Queries go `block_size` at a time, each block against the keys up to its own last position:
  the keys after it would all be masked, so the result is the same while the QK^T and AV
  products and the softmax shrink by (n - 1) / 2n for n blocks (a quarter at n = 2, towards
  a half for long sequences), as FlashAttention skips them. Each block draws its own dropout.
  `options` (dropout_rate, deterministic, dtype) go to dot_product_attention.
  """
  length = query.shape[1]
  causal = causal_mask(length, length)
  outputs = []
  for index, start in enumerate(range(0, length, block_size)):
    stop = min(start + block_size, length)
    block_mask = causal[start:stop, :stop]
    if mask is not None:
      # Broadcast axes (size 1) stay whole.
      mask_rows = slice(None) if mask.shape[-2] == 1 else slice(start, stop)
      block_mask = block_mask & mask[..., mask_rows, :stop]
    outputs.append(dot_product_attention(
        query[:, start:stop], key[:, :stop], value[:, :stop], mask=block_mask,
        dropout_rng=None if dropout_rng is None else jax.random.fold_in(dropout_rng, index),
        **options))
  return jnp.concatenate(outputs, axis=1)


class MultiHeadSelfAttention(nn.Module):
  """Self-attention over `config.d_model` features split into `config.num_heads` heads.

  In decode mode, keys and values live in the 'cache' collection with a fixed size
  (B, max_len, H, D) set by the input length at init (see `transformer.init_cache`). A call with
  L >= 1 tokens writes them at `cache_index` and attends causally over positions
  < cache_index + L, so a prompt is prefilled in one call and then one token goes per call, with
  the same shapes every step. Writing past max_len is not detected (shapes are static); callers
  keep cache_index + L <= max_len.
  """

  config: 'TransformerConfig'

  @nn.compact
  def __call__(
      self,
      inputs: jax.Array,
      *,
      mask: jax.Array | None = None,
      causal: bool = False,
      train: bool = False,
      decode: bool = False,
  ) -> jax.Array:
    """Maps (B, T, F) to (B, T, d_model).

    `mask` is for non-decode calls only. `causal`: no query attends to a later position, on top
    of `mask` (in decode mode the cache's own mask already says so).
    """
    config = self.config
    head_dim = config.d_model // config.num_heads
    project = lambda name: lora.dense(config, f'attention/{name}', (config.num_heads, head_dim),
                                      in_shape=inputs.shape[-1:], axes=('embed', 'heads', 'kv'),
                                      name=name)
    query = project('query')(inputs)
    key = project('key')(inputs)
    value = project('value')(inputs)
    # Megatron: each tensor-parallel device computes its own heads, no communication until `out`.
    query, key, value = (nn.with_logical_constraint(x, ('batch', 'length', 'heads', 'kv'))
                         for x in (query, key, value))

    if decode:
      if mask is not None:
        raise ValueError('decode mode builds its own causal mask over the cache; pass mask=None')
      key, value, mask = self._update_cache(key, value)
      causal = False

    if config.attention_impl == 'explicit':
      dropout_rate = config.attention_dropout_rate
      attend = functools.partial(
          dot_product_attention, mask=mask, dropout_rate=dropout_rate,
          dropout_rng=self.make_rng('dropout') if train and dropout_rate > 0.0 else None,
          deterministic=not train, dtype=config.dtype)
      if causal:
        attend = functools.partial(causal_dot_product_attention, **attend.keywords,
                                   block_size=config.causal_block_size)
      out = attend(query, key, value)
    else:
      # cuDNN's kernel takes causality as a flag but a mask only as a full (Tq, Tk) bias:
      # masked calls (padding, a decode step over the cache) stay on XLA's implementation.
      implementation = None if mask is not None else fused_implementation(
          jax.devices()[0], query.dtype, head_dim)
      out = jax.nn.dot_product_attention(query, key, value, mask=mask, is_causal=causal,
                                         implementation=implementation)

    if self.is_mutable_collection('intermediates'):
      # Recomputed here rather than returned by the kernel so both impls can offer the pattern.
      if causal:
        full = causal_mask(query.shape[1], key.shape[1])
        mask = full if mask is None else mask & full
      self.sow('intermediates', 'attention_weights', attention_weights(query, key, mask=mask))

    out = nn.with_logical_constraint(out, ('batch', 'length', 'heads', 'kv'))
    return lora.dense(config, 'attention/out', config.d_model, in_shape=out.shape[-2:],
                      axes=('heads', 'kv', 'embed'), name='out')(out)

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
