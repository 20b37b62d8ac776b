"""int8 with qwix: per-channel int8 kernels, close outputs, a smaller artifact, QAT gradients."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax import data
from bigmodel_jax.compress import quantize
from bigmodel_jax.compress import report
from bigmodel_jax.infer import export
from bigmodel_jax.infer import serving
from bigmodel_jax.models.cnn import CNN
from bigmodel_jax.models.mlp import MLP
from bigmodel_jax.models.mlp import MLPConfig
from bigmodel_jax.models.cnn import CNNConfig


@pytest.fixture(scope='module')
def spec():
  return data.load_dataset('digits', data_dir=None, seq_len=1, tokenizer='char', target=None,
                           test_fraction=0.2, validation_fraction=0.1, seed=0).spec


def _inputs(spec, n=32):
  return jnp.asarray(np.random.default_rng(0).uniform(size=(n, *spec.input_shape)), jnp.float32)


# Static (calibrated) activation scales clip the rare largest activations: a larger error.
@pytest.mark.parametrize('calibration_batches, tolerance', [(0, 0.05), (2, 0.15)])
def test_int8_kernels_with_a_scale_per_output_channel_and_close_outputs(spec, calibration_batches,
                                                                       tolerance):
  model = CNN(CNNConfig(num_outputs=10, conv_features=(8, 16), dense_features=(32,)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  inputs = _inputs(spec)
  quantized, qparams = quantize.quantize(model, params, spec.example_inputs(),
                                         [inputs[:16], inputs[16:]][:calibration_batches])
  kernel = qparams['Conv_1']['kernel'].array
  assert kernel.qvalue.dtype == jnp.int8 and kernel.qvalue.shape == (3, 3, 8, 16)
  assert kernel.scale.shape == (1, 1, 1, 16)  # one per output channel
  np.testing.assert_array_equal(np.abs(kernel.qvalue).max(axis=(0, 1, 2)), 127)  # absmax
  expected = jax.jit(model.apply)({'params': params}, inputs)
  got = jax.jit(quantized.apply)({'params': qparams}, inputs)
  error = float(jnp.abs(got - expected).max() / jnp.abs(expected).max())
  assert 0 < error < tolerance


def test_the_int8_artifact_stores_int8_weights(spec, tmp_path):
  model = MLP(MLPConfig(num_outputs=10, hidden_sizes=(256, 256)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  quantized, qparams = quantize.quantize(model, params, spec.example_inputs(),
                                         [_inputs(spec)])
  export.export_model(model, params, spec, str(tmp_path / 'f32'))
  export.export_model(quantized, qparams, spec, str(tmp_path / 'int8'))
  sizes = [os.path.getsize(tmp_path / name / serving.WEIGHTS_FILE) for name in ('f32', 'int8')]
  # 84,480 kernel weights; 522 biases, all zero at initialisation, so stored as bare bitmasks
  # (32 + 32 + 2 bytes); int8 adds a float32 scale per output channel (522) and one per layer
  # input (3, the calibrated activation scales).
  biases = 32 + 32 + 2
  assert sizes == [4 * 84_480 + biases, 84_480 + biases + 4 * (522 + 3)]
  assert sizes[0] / sizes[1] > 3.8
  assert report.stored_weights(qparams)[0] == report.stored_weights(params)[0]
  run, artifact = serving.load_exported(str(tmp_path / 'int8'))
  assert [w['dtype'] for w in artifact['weights'] if w['name'].endswith('qvalue')] == ['int8'] * 3
  inputs = np.asarray(_inputs(spec, 3))
  np.testing.assert_allclose(run(inputs), jax.jit(quantized.apply)({'params': qparams}, inputs),
                             rtol=1e-5, atol=1e-5)


def test_quantization_aware_model_has_the_same_params_and_passes_gradients(spec):
  model = MLP(MLPConfig(num_outputs=10, hidden_sizes=(32,)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  aware = quantize.quantization_aware(model)
  assert (jax.tree.structure(aware.init(jax.random.PRNGKey(0), spec.example_inputs())['params'])
          == jax.tree.structure(params))
  inputs = _inputs(spec)
  fake = jax.jit(aware.apply)({'params': params}, inputs)
  assert not np.allclose(fake, model.apply({'params': params}, inputs))  # rounding happened
  grads = jax.jit(jax.grad(lambda p: jnp.sum(aware.apply({'params': p}, inputs) ** 2)))(params)
  assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))  # straight through
