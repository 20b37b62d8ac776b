import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax import models
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import export
from bigmodel_jax.infer import serving

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BATCH_SIZES = (1, 3, 7)

# One small model of each input kind: images, feature rows, token ids.
CASES = {
    'cnn': (models.CNN(num_outputs=10, conv_features=(4, 8), dense_features=(16,)),
            {'task': 'classification', 'input_shape': [8, 8, 1], 'num_classes': 10,
             'class_names': [str(d) for d in range(10)]}),
    'mlp': (models.MLP(num_outputs=1, hidden_sizes=(8,)),
            {'task': 'regression', 'input_shape': [3], 'num_outputs': 1,
             'feature_names': ['a', 'b', 'c'], 'target': 'y',
             'normalization': {'fill': [0.0] * 3, 'mean': [1.0] * 3, 'std': [2.0] * 3}}),
    'transformer_classifier': (
        models.TransformerClassifier(vocab_size=7, num_outputs=3, max_len=10, num_layers=1,
                                     num_heads=2, d_model=8),
        {'task': 'classification', 'input_shape': [10], 'num_classes': 3, 'seq_len': 10,
         'vocab_size': 7, 'tokenizer': {'type': 'char', 'vocab': ' abcde'},
         'class_names': ['comedy', 'history', 'tragedy']}),
}


def inputs(name: str, batch_size: int) -> np.ndarray:
  _, metadata = CASES[name]
  rng = np.random.default_rng(batch_size)
  shape = (batch_size, *metadata['input_shape'])
  if 'vocab_size' in metadata:
    return rng.integers(0, metadata['vocab_size'], shape).astype(np.int32)
  return rng.random(shape).astype(np.float32)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """{name: (artifact folder, in-process outputs for each batch size)}."""
  result = {}
  for name, (model, metadata) in CASES.items():
    example = jnp.asarray(inputs(name, 1))
    params = jax.jit(model.init)(jax.random.key(0), example)['params']
    directory = str(tmp_path_factory.mktemp(name))
    export.export_model(model, params, metadata, directory,
                        description={'model': name, 'step': 5})
    forward = jax.jit(lambda p, x, model=model: model.apply({'params': p}, x))
    result[name] = directory, {b: np.asarray(forward(params, inputs(name, b)))
                               for b in BATCH_SIZES}
  return result


def test_artifact_runs_in_a_process_without_the_model_code(exported, tmp_path):
  """The loader alone (no Flax, no bigmodel_jax.models) reproduces the in-process outputs."""
  for name, (directory, _) in exported.items():
    for b in BATCH_SIZES:
      np.save(tmp_path / f'{name}_{b}.npy', inputs(name, b))
  script = textwrap.dedent(f'''
      import sys
      import numpy as np
      from bigmodel_jax.infer.serving import load_exported
      for name, directory in {json.dumps({n: d for n, (d, _) in exported.items()})}.items():
        run, metadata = load_exported(directory)
        for b in {BATCH_SIZES}:
          np.save(f'{tmp_path}/{{name}}_{{b}}_out.npy', run(np.load(f'{tmp_path}/{{name}}_{{b}}.npy')))
      loaded = [m for m in sys.modules if m.startswith(('bigmodel_jax.models', 'flax'))]
      assert not loaded, loaded
  ''')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 0, result.stderr[-3000:]
  for name, (_, expected) in exported.items():
    for b in BATCH_SIZES:
      out = np.load(tmp_path / f'{name}_{b}_out.npy')
      assert out.shape == expected[b].shape
      np.testing.assert_allclose(out, expected[b], rtol=1e-5, atol=1e-6)


def test_metadata_has_the_input_spec_and_what_inputs_need(exported):
  directory, expected = exported['transformer_classifier']
  run, metadata = serving.load_exported(directory)
  assert metadata['model'] == 'transformer_classifier' and metadata['step'] == 5
  assert metadata['input']['shape'] == ['batch', 10] and metadata['input']['dtype'] == 'int32'
  assert metadata['output']['shape'] == ['batch', 3]
  assert metadata['dataset']['tokenizer'] == {'type': 'char', 'vocab': ' abcde'}
  assert 'token ids' in metadata['input']['preparation']
  mlp_metadata = serving.load_exported(exported['mlp'][0])[1]
  assert mlp_metadata['dataset']['normalization']['std'] == [2.0] * 3
  assert mlp_metadata['input'] == {
      'shape': ['batch', 3], 'dtype': 'float32',
      'preparation': 'columns in feature_names order; missing values replaced by '
                     'normalization.fill, then (x - normalization.mean) / normalization.std'}
  # int64 ids (numpy's default) are accepted and cast; floats are not ids.
  np.testing.assert_allclose(run(inputs('transformer_classifier', 3).astype(np.int64)),
                             expected[3], rtol=1e-5, atol=1e-6)
  with pytest.raises(UserInputError, match='dtype float32; the exported model takes int32'):
    run(np.zeros((2, 10), np.float32))
  with pytest.raises(UserInputError, match=r'shape \(2, 9\); the exported model takes \(batch, 10\)'):
    run(np.zeros((2, 9), np.int32))


def test_missing_artifact_and_bad_platform_are_user_errors(tmp_path):
  with pytest.raises(UserInputError, match='no exported model here'):
    serving.load_exported(str(tmp_path))
  model, metadata = CASES['mlp']
  with pytest.raises(UserInputError, match='--platforms=gpu: choose from cpu, cuda, rocm, tpu'):
    export.export_model(model, {}, metadata, str(tmp_path), platforms=['gpu'])
