"""LoRA (Hu et al. 2021): a frozen dense layer plus a trained low-rank update.

    y = x W + b + (alpha / rank) (x A) B,   A: (in, rank) Gaussian, B: (rank, out) zeros

so training starts from the base layer's function exactly. `LoRADense` keeps the base layer's
parameter names (`kernel`, `bias`, same shapes as nn.Dense / nn.DenseGeneral over trailing
axes) and adds `lora_a` and `lora_b` beside them: a LoRA model's paths are the base model's
plus the adapters, so `config.init.workdir` copies a trained base into it and the adapters
(absent in the source) start fresh. `TRAINED` names what trains (the optimizer freezes the
rest, train/optimizers.py); `merge` folds the adapters into the kernels for export.
"""

import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

# The adapters, and a classifier's head (a new task needs its own head trained whole).
TRAINED = (r'(^|/)lora_[ab]$', r'^head(_[^/]+)?/')  # a multi-task model's are head_<task>
# A transformer block's dense layers, by the names `layer_matches` sees.
TRANSFORMER_LAYERS = ('attention/query', 'attention/key', 'attention/value', 'attention/out',
                      'mlp_in', 'mlp_out')


def layer_matches(config: Any, layer: str) -> bool:
  """Whether dense layer `layer` (one of TRANSFORMER_LAYERS) gets an adapter under `config`."""
  return config.lora_rank > 0 and re.search(config.lora_targets, layer) is not None


class LoRADense(nn.Module):
  """A dense layer over the trailing `num_in_axes` axes of its input, with a LoRA adapter.

  Attributes:
    features: output shape (an int, or a tuple as nn.DenseGeneral's `features`).
    num_in_axes: how many trailing input axes are contracted (nn.DenseGeneral's axis=(-2, -1)
      is 2).
    rank, alpha: the adapter's rank and scale (the update is multiplied by alpha / rank).
    axes: the kernel's logical axis names (parallel/rules.py), input axes then output axes; the
      bias takes the output ones. The small adapters have none (replicated).
  """
  features: int | tuple[int, ...]
  rank: int
  alpha: float
  axes: tuple[str | None, ...]
  num_in_axes: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = (self.features,) if isinstance(self.features, int) else tuple(self.features)
    in_shape = x.shape[-self.num_in_axes:]
    n_in, n_out = len(in_shape), len(features)
    # nn.DenseGeneral's initialisation (LeCun normal over the flattened fan-in and fan-out).
    kernel_init = nn.initializers.lecun_normal(in_axis=tuple(range(n_in)),
                                               out_axis=tuple(range(n_in, n_in + n_out)))
    kernel = self.param('kernel', nn.with_logical_partitioning(kernel_init, self.axes),
                        (*in_shape, *features), self.param_dtype)
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros,
                                                           self.axes[n_in:]),
                      features, self.param_dtype)
    in_dim, out_dim = math.prod(in_shape), math.prod(features)
    lora_a = self.param('lora_a', nn.initializers.normal(stddev=1 / self.rank),
                        (in_dim, self.rank), self.param_dtype)
    lora_b = self.param('lora_b', nn.initializers.zeros, (self.rank, out_dim), self.param_dtype)
    x, kernel, bias, lora_a, lora_b = nn.dtypes.promote_dtype(
        x, kernel, bias, lora_a, lora_b, dtype=self.dtype)
    flat = x.reshape(*x.shape[:-n_in], in_dim)
    y = flat @ kernel.reshape(in_dim, out_dim) + (self.alpha / self.rank) * (flat @ lora_a) @ lora_b
    return y.reshape(*x.shape[:-n_in], *features) + bias


def dense(config: Any, layer: str, features: int | tuple[int, ...], *,
          in_shape: tuple[int, ...], axes: tuple[str | None, ...], name: str) -> nn.Module:
  """The dense layer `layer` of a transformer block: LoRADense where `config` targets it.

  It contracts the trailing `in_shape` axes of its input; `axes` are the kernel's logical axis
  names (input axes, then output axes).
  """
  num_in_axes = len(in_shape)
  if layer_matches(config, layer):
    return LoRADense(features, rank=config.lora_rank, alpha=config.lora_alpha, axes=axes,
                     num_in_axes=num_in_axes, dtype=config.dtype,
                     param_dtype=config.param_dtype, name=name)
  options = dict(dtype=config.dtype, param_dtype=config.param_dtype, name=name)
  if num_in_axes == 1 and isinstance(features, int):
    return nn.Dense(features, **options,
                    kernel_init=nn.with_logical_partitioning(nn.linear.default_kernel_init, axes),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                           axes[1:]))
  features = (features,) if isinstance(features, int) else tuple(features)
  return nn.DenseGeneral(
      features, axis=tuple(range(-num_in_axes, 0)), **options,
      kernel_init=_named_flat(nn.linear.default_kernel_init, axes, (*in_shape, *features)),
      bias_init=_named_flat(nn.initializers.zeros_init(), axes[num_in_axes:], features))


def _named_flat(init: Any, names: tuple[str | None, ...], shape: tuple[int, ...]) -> Any:
  """`init` for nn.DenseGeneral, which draws its kernel (and bias) flat and reshapes it after:
  the names belong to the full shape, so the value is boxed already reshaped (the same values;
  a flat value under 3 names would fail the sharding constraint of unboxing it)."""
  def named_init(rng, flat_shape, dtype):
    return nn.LogicallyPartitioned(init(rng, flat_shape, dtype).reshape(shape), names)
  return named_init


def merged(model: nn.Module, params: Any) -> tuple[nn.Module, Any]:
  """The same function without adapters: the model with lora_rank 0 and `merge`d params.

  A model without adapters is returned as it is.
  """
  config = model.config
  if not getattr(config, 'lora_rank', 0):
    return model, params
  return (model.clone(config=config.replace(lora_rank=0)),
          merge(params, config.lora_alpha, config.lora_rank))


def merge(params: Any, alpha: float, rank: int) -> Any:
  """`params` with each adapter folded into its kernel (W + alpha/rank A B), adapters removed.

  The result has the base model's paths and shapes (scanned layers' leading axis included).
  """
  flat = traverse_util.flatten_dict(params)
  merged = {}
  for path, leaf in flat.items():
    if path[-1] in ('lora_a', 'lora_b'):
      continue
    if path[-1] == 'kernel' and path[:-1] + ('lora_a',) in flat:
      a, b = flat[path[:-1] + ('lora_a',)], flat[path[:-1] + ('lora_b',)]
      update = jnp.einsum('...ir,...ro->...io', a.astype(jnp.float32), b.astype(jnp.float32))
      leaf = (leaf.astype(jnp.float32) + (alpha / rank) * update.reshape(leaf.shape)
              ).astype(leaf.dtype)
    merged[path] = leaf
  return traverse_util.unflatten_dict(merged)
