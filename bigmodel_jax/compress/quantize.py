"""int8 quantization with Google's qwix: post-training (PTQ) and quantization-aware training (QAT).

qwix intercepts the matmuls and convolutions of an unchanged Flax Linen model (Dense and Conv
kernels alike), so no model code knows about quantization; aqtp, the other Google library, needs
its dot_general injected into every layer, i.e. model changes. What qwix does here:
  * weights: symmetric int8 with one scale per output channel (the kernel's last axis), absmax;
  * activations: int8 as well (qwix's convolution needs both operands in the same type), with a
    scale per tensor measured on every call, or, with calibration, fixed from the mean absmax of
    a few training batches (static: no reduction at serving time);
  * QAT: the same rules as fake quantization in the forward pass with straight-through
    gradients, so fine-tuning learns weights that survive rounding.
The quantized params hold int8 arrays, so an export of the PTQ model stores int8 constants.
"""

import functools
from collections.abc import Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import qwix

QTYPE = jnp.int8


def _rules(static_activations: bool, rule=qwix.QtRule) -> list[qwix.QuantizationRule]:
  return [rule(module_path='.*', weight_qtype=QTYPE, act_qtype=QTYPE,
               act_static_scale=static_activations)]


def quantization_aware(model: nn.Module) -> nn.Module:
  """`model` with fake int8 quantization (straight-through gradients); same params tree."""
  return qwix.quantize_model(model, qwix.QtProvider(_rules(static_activations=False)))


def _calibrate(model: nn.Module, params: Any, batches: Iterable[jax.Array]) -> Any:
  """qwix's activation statistics (running mean of each input's absmax) over `batches`."""
  calibrating = qwix.quantize_model(model, qwix.QtProvider(_rules(static_activations=True)))
  # Eager: qwix's statistics under jit leak a tracer out of its custom_vjp (qwix 0.1.8).
  apply = functools.partial(calibrating.apply, train=False, mutable=['quant_stats'])
  stats = None
  for inputs in batches:
    variables = {'params': params}
    if stats is not None:
      variables['quant_stats'] = stats
    _, updated = apply(variables, inputs)
    stats = updated['quant_stats']
  return stats


def quantize(model: nn.Module, params: Any, example_inputs: jax.Array,
             calibration: Iterable[jax.Array] = ()) -> tuple[nn.Module, Any]:
  """The int8 model and its quantized params, from float `params`.

  With `calibration` batches (training inputs) the activation scales are fixed from them;
  without, each call measures its own.
  """
  stats = _calibrate(model, params, calibration)
  quantized = qwix.quantize_model(
      model, qwix.PtqProvider(_rules(stats is not None, qwix.QuantizationRule)))
  abstract = jax.eval_shape(
      lambda: quantized.init(jax.random.PRNGKey(0), example_inputs, train=False))['params']
  if stats is None:
    return quantized, qwix.quantize_params(params, abstract)
  return quantized, qwix.quantize_params(params, abstract, stats)

