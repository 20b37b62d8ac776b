"""Embedding -> (bi)LSTM -> mean over the tokens -> Dense: the classic recurrent text classifier.

The shape of Flax's `examples/sst2` model: Flax's `nn.RNN` over an `nn.OptimizedLSTMCell` (no
recurrence written here), told each row's length so padding (`pad_id`, right-padded as
`data.text.encode_passage` pads) never enters a state, and the backward direction of a
bidirectional layer starts at each row's last real token.
"""

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.models.base import Model, ModelConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class LSTMConfig(ModelConfig):
  """Attributes:
    vocab_size, num_outputs: from the data (token ids; classes).
    embed_dim: width of the token embedding.
    hidden_size: LSTM state size (per direction).
    bidirectional: a second LSTM reads each row backwards; the two outputs are concatenated.
    dropout_rate: on the pooled features, before the head.
    pad_id: the padding token (never read).
  """

  FROM_SPEC: ClassVar[tuple[str, ...]] = ('vocab_size', 'num_outputs')

  vocab_size: int
  num_outputs: int
  embed_dim: int = 32
  hidden_size: int = 128
  bidirectional: bool = False
  dropout_rate: float = 0.0
  pad_id: int = 0

  def validate(self) -> None:
    self.check_positive('vocab_size', 'num_outputs', 'embed_dim', 'hidden_size')
    self.check_rate('dropout_rate')


class LSTMClassifier(Model):
  """int32 tokens (B, T) -> float32 logits (B, num_outputs); padding changes nothing."""

  TASKS: ClassVar[tuple[str, ...]] = ('classification',)

  config: LSTMConfig

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
    config = self.config
    is_token = tokens != config.pad_id
    lengths = is_token.sum(axis=1)
    x = nn.Embed(config.vocab_size, config.embed_dim, dtype=config.dtype,
                 param_dtype=config.param_dtype, name='embed')(tokens)
    rnn = functools.partial(nn.RNN, nn.OptimizedLSTMCell(
        config.hidden_size, dtype=config.dtype, param_dtype=config.param_dtype))
    if config.bidirectional:
      layer = nn.Bidirectional(rnn(), rnn(), name='lstm')
    else:
      layer = rnn(name='lstm')
    h = layer(x, seq_lengths=lengths)
    weights = is_token[..., None].astype(jnp.float32)
    pooled = (h.astype(jnp.float32) * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)
    pooled = nn.Dropout(config.dropout_rate)(pooled, deterministic=not train)
    logits = nn.Dense(config.num_outputs, dtype=config.dtype, param_dtype=config.param_dtype,
                      name='head')(pooled)
    return logits.astype(jnp.float32)
