"""Decoder-only transformer language model, a classifier and a multi-task model sharing its trunk.

Pre-LayerNorm blocks (attention, then a GELU MLP, each added to the residual stream), learned
token and position embeddings, a final LayerNorm. Read `TransformerConfig`, `Block`, then
`TransformerLM`; `TransformerClassifier` and `TransformerMultiTask` put other heads on the same
trunk (the same parameter names, so one's trunk initialises another's through `init.workdir`).

The blocks are either separate layers (`block_0` ... `block_{L-1}` in the params) or, with
`scan_layers=True`, one layer scanned L times (`blocks`, every leaf with a leading layer axis):
XLA then compiles one block instead of L, so compile time stays flat as depth grows.
`stack_layers` and `unstack_layers` convert params (or a cache) between the two layouts.
"""

import dataclasses
import functools
import re
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.marks import setting
from bigmodel_jax.models.attention import MultiHeadSelfAttention, check_attention_config
from bigmodel_jax.models import lora
from bigmodel_jax.models.base import Model, ModelConfig, config_error

# What each block keeps for the backward pass (`config.remat`): 'none' keeps everything (no
# remat); 'full' keeps only the block's input and recomputes the rest; 'dots' keeps the matmuls
# without batch dimensions (the dense layers) and recomputes attention and the elementwise work.
REMAT_POLICIES = ('none', 'full', 'dots')
_SAVEABLE = {'full': None, 'dots': jax.checkpoint_policies.dots_with_no_batch_dims_saveable}

# GPT-2's initialisation: with unit-variance embeddings a tied head would start with huge logits.
_embedding_init = nn.initializers.normal(stddev=0.02)

_SCANNED = 'blocks'
_LAYER = re.compile(r'block_(\d+)')

# What a classifier's linear head reads: the mean of the token states, or the last token's state
# (with causal attention, the only one that has seen the whole text).
POOLS = ('mean', 'last')
# The heads of a multi-task model and the task each fits: 'lm' gives next-token logits at every
# position (as the LM's head), 'mean' and 'last' a classifier's logits (pooled as in POOLS).
HEADS = {'lm': 'language_modeling', 'mean': 'classification', 'last': 'classification'}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig(ModelConfig):
  """Everything both transformer models and their blocks are built from.

  Attributes:
    vocab_size, max_len, num_outputs: from the data: token ids, positions, and the outputs
      (the vocabulary for the LM, the classes for the classifier).
    num_layers, num_heads, d_model, mlp_ratio: the blocks' shape (MLP width mlp_ratio * d_model).
    dropout_rate: on the embeddings and on each block's two residual branches.
    attention_dropout_rate: on the attention weights ('explicit' attention only).
    attention_impl: 'explicit' (softmax(QK^T/sqrt(d_k))V written out) or 'fused'
      (jax.nn.dot_product_attention: cuDNN's flash attention on an NVIDIA GPU in bfloat16 or
      float16 without a mask beyond causality, see attention.fused_implementation; XLA's elsewhere).
    causal_block_size: 'explicit' causal attention takes the queries this many at a time, each
      block against the keys up to its own position only (attention.causal_dot_product_attention:
      the all-masked blocks above the diagonal are skipped); a size >= the sequence length
      computes the whole square.
    tie_embeddings: LM (and multi-task 'lm' heads): the output head is the token embedding
      transposed.
    pad_id: classifier and multi-task: the token that is neither attended to nor pooled.
    causal: classifier and multi-task: each token attends to itself and earlier tokens only, as
      in the LM, so that an LM's trunk computes for it what it computed in the LM (the LM itself
      is always causal).
    pool: classifier: one of POOLS.
    scan_layers: one scanned block instead of num_layers separate ones (same function, params
      stacked on a leading layer axis).
    remat: recompute in the backward pass instead of storing: one of REMAT_POLICIES.
    lora_rank, lora_alpha, lora_targets: LoRA adapters (models/lora.py) of rank lora_rank > 0
      (0: none) scaled by lora_alpha / lora_rank on the block's dense layers whose name
      (lora.TRANSFORMER_LAYERS, e.g. 'attention/query', 'mlp_in') lora_targets (a regex)
      matches; only the adapters and a classifier's head then train.
  """

  FROM_SPEC: ClassVar[tuple[str, ...]] = ('vocab_size', 'max_len', 'num_outputs')

  vocab_size: int
  max_len: int
  num_outputs: int
  num_layers: int = 4
  num_heads: int = 4
  d_model: int = 128
  mlp_ratio: int = 4
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  attention_impl: str = 'explicit'
  # The same causal attention split differently: may change when a run resumes.
  causal_block_size: int = setting(64, resume=True)
  tie_embeddings: bool = True
  pad_id: int = 0
  causal: bool = False
  pool: str = 'mean'
  scan_layers: bool = False
  remat: str = 'none'
  lora_rank: int = 0
  lora_alpha: float = 8.0
  lora_targets: str = 'attention/(query|value)'  # LoRA paper's W_q and W_v

  def validate(self) -> None:
    self.check_positive('vocab_size', 'max_len', 'num_outputs', 'num_layers', 'mlp_ratio')
    self.check_rate('dropout_rate')
    check_attention_config(self)
    if not isinstance(self.causal, bool):
      raise config_error('causal', self.causal, 'must be True or False')
    if self.pool not in POOLS:
      raise config_error('pool', self.pool, f'choose one of {", ".join(POOLS)}')
    if self.remat not in REMAT_POLICIES:
      raise config_error('remat', self.remat, f'choose one of {", ".join(REMAT_POLICIES)}')
    if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
      raise config_error('lora_rank', self.lora_rank, 'must be an integer >= 0 (0: no LoRA)')
    if self.lora_rank:
      try:
        targets = [layer for layer in lora.TRANSFORMER_LAYERS if lora.layer_matches(self, layer)]
      except (re.error, TypeError):
        targets = None
      if not targets:
        raise config_error('lora_targets', self.lora_targets,
                           'must be a regex matching some of the dense layers '
                           f'{", ".join(lora.TRANSFORMER_LAYERS)}')


def _check_length(tokens: jax.Array, max_len: int) -> None:
  if tokens.shape[1] > max_len:
    raise UserInputError(f'sequence length {tokens.shape[1]} exceeds the model max_len={max_len}')


class Block(nn.Module):
  """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)).

  `causal`, `train` and `decode` are attributes rather than call arguments so that the call
  takes arrays only, as `nn.scan` and `nn.remat` want.
  """

  config: TransformerConfig
  causal: bool = False
  train: bool = False
  decode: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    config = self.config
    layer_norm = functools.partial(_layer_norm, config)
    # A new Dropout per branch (not one shared): each draws its own mask.
    dropout = lambda h: nn.Dropout(config.dropout_rate)(h, deterministic=not self.train)

    h = layer_norm(name='attention_norm')(x)
    h = MultiHeadSelfAttention(config, name='attention')(
        h, mask=mask, causal=self.causal, train=self.train, decode=self.decode)
    x = _residual(x + dropout(h))

    h = layer_norm(name='mlp_norm')(x)
    # Megatron: the first matrix split by columns, the second by rows; the sum over the devices'
    # rows is the sublayer's one all-reduce, back onto the whole residual stream.
    h = lora.dense(config, 'mlp_in', config.mlp_ratio * config.d_model, in_shape=h.shape[-1:],
                   axes=('embed', 'mlp'), name='mlp_in')(h)
    h = nn.with_logical_constraint(nn.gelu(h), ('batch', 'length', 'mlp'))
    h = lora.dense(config, 'mlp_out', config.d_model, in_shape=h.shape[-1:],
                   axes=('mlp', 'embed'), name='mlp_out')(h)
    return _residual(x + dropout(h))


def _residual(x: jax.Array) -> jax.Array:
  """The residual stream (B, T, d_model): rows split as the batch, whole on `tensor`."""
  return nn.with_logical_constraint(x, ('batch', 'length', 'embed'))


def _layer_norm(config: TransformerConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(dtype=config.dtype, param_dtype=config.param_dtype,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ('embed',)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ('embed',)),
                      name=name)


def _scan_body(block: Block, x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, None]:
  """One layer as `nn.scan` sees it: the residual stream is the carry, nothing is stacked."""
  return block(x, mask), None


def _blocks(config: TransformerConfig, x: jax.Array, mask: jax.Array | None, *, causal: bool,
            train: bool, decode: bool) -> jax.Array:
  """The num_layers blocks, separate or scanned, each with the config's remat policy.

  Called inside the model's compact `__call__`, so the blocks are the model's own submodules.
  """
  block = Block
  if config.remat != 'none':
    # Under scan the loop already keeps XLA from merging the recomputation with the forward
    # pass, so the CSE barriers are left out there.
    block = nn.remat(Block, policy=_SAVEABLE[config.remat],
                     prevent_cse=not config.scan_layers)
  if not config.scan_layers:
    for i in range(config.num_layers):
      x = block(config, causal=causal, train=train, decode=decode, name=f'block_{i}')(x, mask)
    return x
  scan = nn.scan(
      _scan_body, length=config.num_layers, in_axes=nn.broadcast,
      variable_axes={'params': 0, 'cache': 0, 'intermediates': 0},
      split_rngs={'params': True, 'dropout': True},
      metadata_params={nn.PARTITION_NAME: 'layers'})  # the stacked axis's logical name
  x, _ = scan(block(config, causal=causal, train=train, decode=decode, name=_SCANNED), x, mask)
  return x


def _embed_and_encode(config: TransformerConfig, tokens: jax.Array, positions: jax.Array,
                      mask: jax.Array | None, *, causal: bool, train: bool,
                      decode: bool = False) -> tuple[jax.Array, nn.Embed]:
  """Token + position embeddings, the blocks and the final LayerNorm: the trunk both models share.

  The blocks attend where `mask` allows, and with `causal` to no later position.

  Called inside the model's compact `__call__`, so the layers it creates are the model's own
  (same parameter names as if written inline). Returns the hidden states and the token
  embedding (for a tied output head).
  """
  embed = functools.partial(
      nn.Embed, features=config.d_model, dtype=config.dtype, param_dtype=config.param_dtype)
  token_embed = embed(config.vocab_size, name='token_embed',
                      embedding_init=nn.with_logical_partitioning(_embedding_init,
                                                                  ('vocab', 'embed')))
  position_embed = embed(config.max_len, name='position_embed',
                         embedding_init=nn.with_logical_partitioning(_embedding_init,
                                                                     (None, 'embed')))
  x = _residual(token_embed(tokens) + position_embed(positions))
  x = nn.Dropout(config.dropout_rate)(x, deterministic=not train)
  x = _blocks(config, x, mask, causal=causal, train=train, decode=decode)
  x = _layer_norm(config, name='final_norm')(x)
  return x, token_embed


def _padding_mask(is_token: jax.Array) -> jax.Array:
  """(B, 1, 1, T): attend to real tokens only."""
  return is_token[:, None, None, :]


def _classify(config: TransformerConfig, x: jax.Array, is_token: jax.Array, pool: str,
              num_outputs: int, name: str) -> jax.Array:
  """A linear head over the pooled token states (B, T, d) -> logits (B, num_outputs).

  Called inside the model's compact `__call__`, so the head is the model's own submodule `name`.
  """
  x = x.astype(jnp.float32)
  if pool == 'mean':
    weights = is_token[..., None].astype(jnp.float32)
    pooled = (x * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)
  else:  # the last real token, wherever the padding is
    last = is_token.shape[1] - 1 - jnp.argmax(is_token[:, ::-1], axis=1)
    pooled = jnp.take_along_axis(x, last[:, None, None], axis=1)[:, 0]
  return nn.Dense(num_outputs, dtype=config.dtype, param_dtype=config.param_dtype,
                  kernel_init=nn.with_logical_partitioning(nn.linear.default_kernel_init,
                                                           ('embed', None)),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (None,)),
                  name=name)(pooled)


def _next_token_logits(config: TransformerConfig, x: jax.Array, token_embed: nn.Embed,
                       num_outputs: int, name: str) -> jax.Array:
  """An LM head (B, T, d) -> float32 logits (B, T, num_outputs): the token embedding transposed
  under `tie_embeddings`, else the model's own bias-free Dense submodule `name`."""
  if config.tie_embeddings:
    logits = token_embed.attend(x)
  else:
    logits = nn.Dense(num_outputs, use_bias=False, dtype=config.dtype,
                      param_dtype=config.param_dtype, name=name,
                      kernel_init=nn.with_logical_partitioning(nn.linear.default_kernel_init,
                                                               ('embed', 'vocab')))(x)
  return logits.astype(jnp.float32)


def _trained_only(model: Model) -> tuple[str, ...]:
  """With LoRA adapters only they (and a classifier's head) train; else everything."""
  return lora.TRAINED if model.config.lora_rank else ()


def _matrix_axes(model: Model, path: tuple[str, ...], shape: tuple[int, ...]
                 ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
  """Model.matrix_axes for every transformer: counted from the end, so that the scanned layout's
  leading layer axis is a batch axis; the output heads and the (tied) embeddings are not matrices
  to Muon (its authors train them with Adam)."""
  del model
  if path[-1] != 'kernel' or any(name.startswith('head') for name in path):
    return None
  if path[-2] in ('query', 'key', 'value'):  # (d_model, heads, head_dim)
    return (-3,), (-2, -1)
  if path[-2] == 'out':  # (heads, head_dim, d_model)
    return (-3, -2), (-1,)
  return (-2,), (-1,)


class TransformerLM(Model):
  """GPT-style language model: int32 tokens (B, T) -> float32 next-token logits (B, T, vocab).

  With decode=True the keys and values of earlier calls come from the 'cache' collection (create
  it with `init_cache`, apply with mutable=['cache']) and positions continue from its index.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('language_modeling',)

  config: TransformerConfig
  trained_only = _trained_only
  matrix_axes = _matrix_axes

  def __post_init__(self):
    if self.config.num_outputs != self.config.vocab_size:
      # The LM predicts the next token: one logit per token id.
      raise config_error('num_outputs', self.config.num_outputs,
                         f'the LM predicts tokens: must equal vocab_size={self.config.vocab_size}')
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False, decode: bool = False) -> jax.Array:
    config = self.config
    length = tokens.shape[1]
    if decode:
      # Causality over the cache is built into the attention layers.
      cache_index = self.variable('cache', 'cache_index', lambda: jnp.zeros((), jnp.int32))
      positions = cache_index.value + jnp.arange(length)
      cache_index.value = cache_index.value + length
    else:
      _check_length(tokens, config.max_len)
      positions = jnp.arange(length)

    x, token_embed = _embed_and_encode(config, tokens, positions, None, causal=True, train=train,
                                       decode=decode)
    return _next_token_logits(config, x, token_embed, config.num_outputs, 'head')

  def train_flops_per_example(self, params: Any) -> float:
    """max_len * (6 N + 12 L d T): PaLM appendix B / nanoGPT's `estimate_mfu`, per sequence.

    Per token: 6 FLOPs per parameter (2 forward, 4 backward; a multiply-add counts 2), with N the
    parameters except the position embedding (a lookup, no matmul; the tied token embedding does
    count: it is the output matmul), plus attention's QK^T and AV products, 2 matmuls x 2 FLOPs x
    T keys x d per layer forward, x3 with backward: 12 L d T. Either params layout counts the same.
    """
    config = self.config
    n = _count(params) - _count(params['position_embed'])
    per_token = 6.0 * n + 12.0 * config.num_layers * config.d_model * config.max_len
    return config.max_len * per_token


class TransformerClassifier(Model):
  """Encoder over int32 tokens (B, T) -> float32 logits (B, num_outputs).

  Bidirectional by default (`causal` makes it attend as the LM does), with a linear head over the
  `pool`ed token states. Tokens equal to `pad_id` are neither attended to nor pooled, so padding
  never changes the output.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('classification',)

  config: TransformerConfig
  trained_only = _trained_only
  matrix_axes = _matrix_axes

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool = False) -> jax.Array:
    config = self.config
    _check_length(tokens, config.max_len)
    is_token = tokens != config.pad_id
    x, _ = _embed_and_encode(config, tokens, jnp.arange(tokens.shape[1]), _padding_mask(is_token),
                             causal=config.causal, train=train)
    logits = _classify(config, x, is_token, config.pool, config.num_outputs, name='head')
    return logits.astype(jnp.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiTaskConfig(TransformerConfig):
  """A multi-task model's config: the trunk's fields, and its heads from the data.

  Attributes:
    heads: ((task name, head kind, outputs), ...): one head per task of the multi-task DataSpec;
      the kind is a key of HEADS.
  """

  FROM_SPEC: ClassVar[tuple[str, ...]] = ('vocab_size', 'max_len', 'num_outputs', 'heads')

  heads: tuple[tuple[str, str, int], ...]

  def __post_init__(self):
    object.__setattr__(self, 'heads', tuple(tuple(head) for head in self.heads))
    super().__post_init__()

  def validate(self) -> None:
    super().validate()
    if not self.heads:
      raise config_error('heads', self.heads, 'a multi-task model needs at least one head')
    for name, kind, num_outputs in self.heads:
      if kind not in HEADS:
        raise config_error('heads', kind, f'head of task {name!r}: choose one of '
                           f'{", ".join(HEADS)}')
      if kind == 'lm' and not self.causal:
        raise config_error('causal', self.causal, f"the 'lm' head of task {name!r} predicts the "
                           'next token, which a bidirectional trunk lets it see: set True')
      if kind == 'lm' and num_outputs != self.vocab_size:
        raise config_error('heads', num_outputs, f"the 'lm' head of task {name!r} predicts "
                           f'tokens: must equal vocab_size={self.vocab_size}')


class TransformerMultiTask(Model):
  """One trunk, one head per task: {task: int32 tokens (B_task, T)} -> {task: float32 outputs}.

  The tasks' rows go through the trunk together (concatenated along the batch, so one pass) and
  each head reads its own rows: 'lm' next-token logits (B_task, T, vocab), tied to the token
  embedding unless `tie_embeddings` is False; 'mean' or 'last' classifier logits
  (B_task, classes). Only the tasks present in the inputs are computed: evaluation feeds one at
  a time. Head parameters are `head_<task>/...`.
  """

  TASKS: ClassVar[tuple[str, ...]] = ('multitask',)

  config: MultiTaskConfig
  trained_only = _trained_only
  matrix_axes = _matrix_axes

  @nn.compact
  def __call__(self, inputs: dict[str, jax.Array], *, train: bool = False
               ) -> dict[str, jax.Array]:
    config = self.config
    heads = [head for head in config.heads if head[0] in inputs]
    tokens = jnp.concatenate([inputs[name] for name, _, _ in heads])
    _check_length(tokens, config.max_len)
    is_token = tokens != config.pad_id
    x, token_embed = _embed_and_encode(config, tokens, jnp.arange(tokens.shape[1]),
                                       _padding_mask(is_token), causal=config.causal, train=train)
    outputs, start = {}, 0
    for name, kind, num_outputs in heads:
      rows = slice(start, start + inputs[name].shape[0])
      start = rows.stop
      if kind == 'lm':
        logits = _next_token_logits(config, x[rows], token_embed, num_outputs, f'head_{name}')
      else:
        logits = _classify(config, x[rows], is_token[rows], kind, num_outputs, f'head_{name}')
      outputs[name] = logits.astype(jnp.float32)
    return outputs


def init_cache(model: TransformerLM, batch_size: int) -> dict[str, Any]:
  """An empty KV cache for `batch_size` rows of up to `model.config.max_len` positions."""
  tokens = jnp.zeros((batch_size, model.config.max_len), jnp.int32)
  # Only the shapes are needed: eval_shape skips materialising a second set of params.
  shapes = jax.eval_shape(
      functools.partial(model.init, decode=True), jax.random.key(0), tokens)['cache']
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def is_scanned(tree: dict[str, Any]) -> bool:
  """Whether a params tree (or cache) of a transformer is in the scanned layout."""
  return _SCANNED in tree


def stack_layers(tree: dict[str, Any]) -> dict[str, Any]:
  """The scanned layout of a tree in the separate layout (params, a cache or intermediates).

  `block_0` ... `block_{L-1}` become one `blocks` subtree whose leaves stack theirs on a new
  leading axis; every other entry is kept as it is.
  """
  layers = sorted((k for k in tree if _LAYER.fullmatch(k)), key=lambda k: int(k[len('block_'):]))
  if not layers or layers != [f'block_{i}' for i in range(len(layers))]:
    raise ValueError(f'expected block_0 ... block_{{L-1}}, got {layers}')
  rest = {k: v for k, v in tree.items() if k not in layers}
  return {**rest, _SCANNED: jax.tree.map(lambda *xs: jnp.stack(xs), *(tree[k] for k in layers))}


def unstack_layers(tree: dict[str, Any]) -> dict[str, Any]:
  """The separate layout of a tree in the scanned layout: the inverse of `stack_layers`."""
  if _SCANNED not in tree:
    raise ValueError(f'expected a {_SCANNED!r} entry, got {sorted(tree)}')
  rest = {k: v for k, v in tree.items() if k != _SCANNED}
  blocks = tree[_SCANNED]
  num_layers = jax.tree.leaves(blocks)[0].shape[0]
  return {**rest, **{f'block_{i}': jax.tree.map(lambda x, i=i: x[i], blocks)
                     for i in range(num_layers)}}


def _count(tree: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))
