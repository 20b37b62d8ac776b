import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax import models
from bigmodel_jax.data import spec as spec_lib
from bigmodel_jax.data import tokenizers
from bigmodel_jax.data.spec import DataSpec, Normalization
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import export
from bigmodel_jax.infer import serving
from bigmodel_jax.infer import weights_file
from experiments import cli
from conftest import REPO

BATCH_SIZES = (1, 3, 7)

# One small model of each input kind: images, feature rows, token ids.
_SPECS = {
    'cnn': spec_lib.image_spec('digits', input_shape=(8, 8, 1),
                               class_names=[str(d) for d in range(10)]),
    'mlp': DataSpec(name='csv:houses.csv', task='regression', input_kind='features',
                    input_shape=(3,), num_outputs=1, feature_names=('a', 'b', 'c'), target='y',
                    normalization=Normalization(fill=(0.0,) * 3, mean=(1.0,) * 3,
                                                std=(2.0,) * 3)),
    'transformer_classifier': spec_lib.text_spec(
        'shakespeare_genre', 'classification', tokenizer=tokenizers.CharTokenizer(' abcde'),
        seq_len=10, class_names=['comedy', 'history', 'tragedy']),
}
_MODEL_CONFIGS = {
    'cnn': {'name': 'cnn', 'conv_features': (4, 8), 'dense_features': (16,)},
    'mlp': {'name': 'mlp', 'hidden_sizes': (8,)},
    'transformer_classifier': {'name': 'transformer_classifier', 'num_layers': 1,
                               'num_heads': 2, 'd_model': 8},
}
CASES = {name: (models.build_model(_MODEL_CONFIGS[name], spec), spec)
         for name, spec in _SPECS.items()}


def inputs(name: str, batch_size: int) -> np.ndarray:
  _, spec = CASES[name]
  rng = np.random.default_rng(batch_size)
  shape = (batch_size, *spec.input_shape)
  if spec.is_text:
    return rng.integers(0, spec.tokenizer.vocab_size, shape).astype(np.int32)
  return rng.random(shape).astype(np.float32)


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
  """{name: (artifact folder, in-process outputs for each batch size)}."""
  result = {}
  for name, (model, spec) in CASES.items():
    example = jnp.asarray(inputs(name, 1))
    params = jax.jit(model.init)(jax.random.key(0), example)['params']
    directory = str(tmp_path_factory.mktemp(name))
    export.export_model(model, params, spec, directory,
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
  assert metadata['format'] == serving.FORMAT
  assert metadata['model'] == 'transformer_classifier' and metadata['step'] == 5
  assert metadata['input']['shape'] == ['batch', 10] and metadata['input']['dtype'] == 'int32'
  assert metadata['output']['shape'] == ['batch', 3]
  assert metadata['dataset']['tokenizer'] == {'type': 'char', 'vocab': ' abcde'}
  assert metadata['dataset']['class_names'] == ['comedy', 'history', 'tragedy']
  assert 'token ids' in metadata['input']['preparation']
  # The run's whole DataSpec travels with the artifact, and the checksums of both files.
  assert DataSpec.from_json(metadata['dataset']) == CASES['transformer_classifier'][1]
  for name, key in ((serving.MODEL_FILE, 'model_sha256'), (serving.WEIGHTS_FILE, 'weights_sha256')):
    with open(os.path.join(directory, name), 'rb') as f:
      assert metadata[key] == hashlib.sha256(f.read()).hexdigest()
  mlp_metadata = serving.load_exported(exported['mlp'][0])[1]
  assert mlp_metadata['dataset']['normalization']['std'] == [2.0] * 3
  assert DataSpec.from_json(mlp_metadata['dataset']) == CASES['mlp'][1]
  assert mlp_metadata['input'] == {
      'shape': ['batch', 3], 'dtype': 'float32',
      'preparation': 'columns in feature_names order; missing values replaced by '
                     'normalization.fill, then (x - normalization.mean) / normalization.std'}
  # int64 ids (numpy's default) are accepted and cast; floats are not ids.
  np.testing.assert_allclose(run(inputs('transformer_classifier', 3).astype(np.int64)),
                             expected[3], rtol=1e-5, atol=1e-6)
  # Wrong arrays from the caller's code are programming errors, not user input.
  with pytest.raises(ValueError, match='dtype float32; the exported model takes int32'):
    run(np.zeros((2, 10), np.float32))
  with pytest.raises(ValueError, match=r'shape \(2, 9\); the exported model takes \(batch, 10\)'):
    run(np.zeros((2, 9), np.int32))


def test_missing_artifact_and_bad_platform_are_user_errors(tmp_path):
  with pytest.raises(UserInputError, match='no exported model here') as error:
    serving.load_exported(str(tmp_path))
  assert (error.value.subject, error.value.value) == ('exported', str(tmp_path))
  assert str(error.value).startswith(f'exported {tmp_path}: no exported model here (missing '
                                     'model.bin, metadata.json)')
  model, spec = CASES['mlp']
  with pytest.raises(UserInputError) as error:
    export.export_model(model, {}, spec, str(tmp_path), platforms=['gpu'])
  assert (error.value.subject, error.value.value) == ('platforms', 'gpu')
  assert str(error.value) == 'platforms gpu: choose from cpu, cuda, rocm, tpu'
  assert cli.describe(error.value) == '--platforms=gpu: choose from cpu, cuda, rocm, tpu'
  assert not os.listdir(tmp_path)  # Checked before anything is written.


def _copy(exported, tmp_path, name='mlp'):
  directory = str(tmp_path / name)
  shutil.copytree(exported[name][0], directory)
  return directory


def _damage_error(directory, damaged_file):
  with pytest.raises(UserInputError) as error:
    serving.load_exported(directory)
  assert (error.value.subject, error.value.value) == ('exported', directory)
  assert os.path.join(directory, damaged_file) in error.value.problem
  assert '\n' not in str(error.value)
  return error.value


@pytest.mark.parametrize('damaged_file', [serving.MODEL_FILE, serving.WEIGHTS_FILE])
@pytest.mark.parametrize('damage', ['truncated', 'altered', 'empty'])
def test_a_damaged_model_or_weights_file_is_refused(exported, tmp_path, damage, damaged_file):
  directory = _copy(exported, tmp_path)
  path = os.path.join(directory, damaged_file)
  with open(path, 'rb') as f:
    serialized = f.read()
  if damage == 'truncated':
    serialized = serialized[:len(serialized) // 2]
  elif damage == 'altered':  # Same length, one byte changed.
    middle = len(serialized) // 2
    serialized = serialized[:middle] + bytes([serialized[middle] ^ 0xFF]) + serialized[middle + 1:]
  else:
    serialized = b''
  with open(path, 'wb') as f:
    f.write(serialized)
  error = _damage_error(directory, damaged_file)
  assert f'({len(serialized)} bytes) does not match the SHA-256 recorded at export' in str(error)
  assert 'python -m experiments.export' in str(error)


@pytest.mark.parametrize('content', [
    b'{"format": "bigmodel_jax.export/2", "model_sha',   # truncated
    b'',                                                 # empty
    b'\xff\xfe not text',                                # not UTF-8
    b'["model.bin"]',                                    # not an object
    b'{"format": "bigmodel_jax.export/1"}',              # an older export: no checksum
    b'{"format": "bigmodel_jax.export/9"}',              # a newer one
])
def test_a_damaged_metadata_json_is_refused(exported, tmp_path, content):
  directory = _copy(exported, tmp_path)
  with open(os.path.join(directory, serving.METADATA_FILE), 'wb') as f:
    f.write(content)
  error = _damage_error(directory, serving.METADATA_FILE)
  assert 'is damaged or from an older export' in str(error)
  assert 'export the run again with python -m experiments.export' in str(error)


def test_an_altered_checksum_is_refused(exported, tmp_path):
  directory = _copy(exported, tmp_path)
  path = os.path.join(directory, serving.METADATA_FILE)
  with open(path, encoding='utf-8') as f:
    metadata = json.load(f)
  metadata['model_sha256'] = '0' * 64
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(metadata, f)
  _damage_error(directory, serving.MODEL_FILE)


def test_an_index_that_does_not_describe_the_weights_is_refused(exported, tmp_path):
  directory = _copy(exported, tmp_path)
  path = os.path.join(directory, serving.METADATA_FILE)
  with open(path, encoding='utf-8') as f:
    metadata = json.load(f)
  metadata['weights'][0]['shape'] = [4, 4]  # 16 values in the bytes of the 8 it has
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(metadata, f)
  error = _damage_error(directory, serving.METADATA_FILE)
  assert "['Dense_0']['bias']" in str(error)


def test_a_missing_weights_file_is_a_user_error(exported, tmp_path):
  directory = _copy(exported, tmp_path)
  os.remove(os.path.join(directory, serving.WEIGHTS_FILE))
  with pytest.raises(UserInputError, match=r'no exported model here \(missing weights.bin\)'):
    serving.load_exported(directory)


def test_the_weights_are_stored_once_outside_the_program(exported):
  """weights.bin holds the weights (the all-zero initial biases as bare bitmasks); model.bin has
  no copy of them."""
  directory, _ = exported['cnn']
  model, _ = CASES['cnn']
  params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(inputs('cnn', 1)))['params']
  leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(params)]
  metadata = serving.load_exported(directory)[1]
  with open(os.path.join(directory, serving.WEIGHTS_FILE), 'rb') as f:
    blob = f.read()
  for got, expected in zip(weights_file.decode(blob, metadata['weights']), leaves, strict=True):
    np.testing.assert_array_equal(got, expected)
  biases = [leaf.size for leaf in leaves if leaf.ndim == 1]
  assert len(blob) == sum(leaf.nbytes for leaf in leaves if leaf.ndim > 1) + sum(
      -(-size // 8) for size in biases)
  with open(os.path.join(directory, serving.MODEL_FILE), 'rb') as f:
    program = f.read()
  assert np.asarray(params['Dense_0']['kernel']).tobytes()[:64] not in program


def test_an_artifact_of_the_previous_format_still_runs(exported, tmp_path):
  """Format 2 baked the weights into model.bin as constants and had no weights.bin."""
  model, spec = CASES['mlp']
  params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(inputs('mlp', 1)))['params']
  forward = jax.jit(lambda x: model.apply({'params': params}, x))
  shape = jax.export.symbolic_shape('batch, 3')
  serialized = jax.export.export(forward, platforms=('cpu',))(
      jax.ShapeDtypeStruct(shape, np.float32)).serialize()
  directory = _copy(exported, tmp_path)
  os.remove(os.path.join(directory, serving.WEIGHTS_FILE))
  with open(os.path.join(directory, serving.MODEL_FILE), 'wb') as f:
    f.write(serialized)
  path = os.path.join(directory, serving.METADATA_FILE)
  with open(path, encoding='utf-8') as f:
    metadata = json.load(f)
  for key in ('weights', 'weights_sha256'):
    del metadata[key]
  metadata.update(format='bigmodel_jax.export/2',
                  model_sha256=hashlib.sha256(serialized).hexdigest())
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(metadata, f)
  run, _ = serving.load_exported(directory)
  np.testing.assert_allclose(run(inputs('mlp', 3)), exported['mlp'][1][3], rtol=1e-5, atol=1e-6)


def _export_mlp(directory, step: int) -> None:
  model, spec = CASES['mlp']
  params = jax.jit(model.init)(jax.random.key(step), jnp.asarray(inputs('mlp', 1)))['params']
  export.export_model(model, params, spec, str(directory), description={'step': step})


def _step(directory) -> int:
  return json.loads((directory / serving.METADATA_FILE).read_text())['step']


def test_an_export_replaces_the_folder_whole_and_leaves_nothing_beside(tmp_path):
  output = tmp_path / 'artifact'
  _export_mlp(output, step=1)
  (output / 'notes.txt').write_text('of the old artifact')
  _export_mlp(output, step=2)
  assert _step(output) == 2
  assert sorted(os.listdir(output)) == sorted([serving.MODEL_FILE, serving.WEIGHTS_FILE,
                                               serving.METADATA_FILE])
  assert os.listdir(tmp_path) == ['artifact']  # no staging or replaced folder left
  serving.load_exported(str(output))  # and it loads: the checksums match the files


def test_a_crash_mid_export_leaves_the_old_artifact_intact(tmp_path, monkeypatch):
  output = tmp_path / 'artifact'
  _export_mlp(output, step=1)
  before = {name: (output / name).read_bytes() for name in os.listdir(output)}

  def crash(*args, **kwargs):
    raise KeyboardInterrupt  # as if the process were stopped while writing metadata.json

  monkeypatch.setattr(export.json, 'dump', crash)
  with pytest.raises(KeyboardInterrupt):
    _export_mlp(output, step=2)
  assert {name: (output / name).read_bytes() for name in os.listdir(output)} == before
  assert os.listdir(tmp_path) == ['artifact']


def test_holds_files_is_false_only_for_an_absent_or_empty_folder(tmp_path):
  assert not export.holds_files(str(tmp_path / 'absent'))
  assert not export.holds_files(str(tmp_path))
  (tmp_path / 'file').write_text('x')
  assert export.holds_files(str(tmp_path)) and export.holds_files(str(tmp_path / 'file'))
