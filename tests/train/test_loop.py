"""End-to-end training through the library function, on the embedded offline datasets."""

import dataclasses
import json
import math
import os

import jax
import numpy as np
import pytest
from conftest import train_until_crash

from bigmodel_jax import data
from bigmodel_jax.errors import NonFiniteError, UserInputError
from bigmodel_jax.infer.evaluate import evaluate_trained
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.run.trained import load_dataset
from bigmodel_jax.train.loop import train_and_evaluate
from experiments.configs import cnn as cnn_config
from experiments.configs import mlp as mlp_config
from experiments.configs import transformer as transformer_config
from experiments.configs import transformer_multitask as multitask_config


def _quiet(config):
  config.log_every = 50
  # The accuracy thresholds were set on one device; the strategies have their own tests.
  config.strategy = 'single'
  return config


def _test_metrics(workdir):
  """The test split's metrics, as experiments.evaluate computes them after training."""
  return evaluate_trained(trained_lib.load_trained(str(workdir)), 'test')['metrics']


def test_digits_mlp_reaches_95_percent(tmp_path):
  config = _quiet(mlp_config.get_config())
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary['validation']['accuracy'] >= 0.93, summary['validation']
  test = _test_metrics(tmp_path)
  assert test['accuracy'] >= 0.95, test
  assert test['f1'] >= 0.94
  assert summary['cost']['params'] == 64 * 128 + 128 + 128 * 10 + 10


def test_digits_cnn_reaches_97_percent(tmp_path):
  summary = train_and_evaluate(_quiet(cnn_config.get_config()), str(tmp_path))
  assert summary['validation']['accuracy'] >= 0.95, summary['validation']
  assert _test_metrics(tmp_path)['accuracy'] >= 0.97


def test_regression_mlp_reaches_high_r2(tmp_path):
  config = _quiet(mlp_config.get_config())
  config.data.name = 'regression'
  config.model.hidden_sizes = (64, 64)
  config.model.dropout_rate = 0.0
  config.num_steps = 1500
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary['cost']['task'] == 'regression'
  assert summary['validation']['r2'] > 0.9, summary['validation']


def _unigram_entropy_nats(tokens: np.ndarray) -> float:
  counts = np.bincount(tokens)
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def test_char_lm_learns_beyond_unigram_statistics(tmp_path):
  config = _quiet(transformer_config.get_config())
  config.model.num_layers = 2
  config.model.d_model = 64
  config.data.seq_len = 64
  config.num_steps = 300
  config.eval_every = 300
  config.eval_batches = 10
  summary = train_and_evaluate(config, str(tmp_path))
  dataset = load_dataset(config)
  sample = np.concatenate([dataset.train[i]['inputs'] for i in range(0, 200_000, 64)])
  entropy = _unigram_entropy_nats(sample)
  # A unigram model cannot go below the unigram entropy; this LM must use context.
  assert summary['validation']['loss'] < entropy - 0.5, (summary['validation'], entropy)
  assert math.isclose(summary['validation']['perplexity'], math.exp(summary['validation']['loss']), rel_tol=1e-6)


def _final_params(workdir):
  return trained_lib.load_trained(workdir).params


def test_interrupted_run_resumes_to_identical_parameters(tmp_path):
  config = _quiet(mlp_config.get_config())
  config.num_steps = 60
  config.checkpoint_every = 20
  config.eval_every = 30
  train_and_evaluate(config, str(tmp_path / 'straight'))

  train_until_crash(config, str(tmp_path / 'resumed'), 45)
  assert trained_lib.load_trained(str(tmp_path / 'resumed')).step == 40
  train_and_evaluate(config, str(tmp_path / 'resumed'))
  straight, resumed = _final_params(str(tmp_path / 'straight')), _final_params(str(tmp_path / 'resumed'))
  jax.tree.map(np.testing.assert_array_equal, straight, resumed)


def test_finished_run_says_so(tmp_path):
  config = _quiet(mlp_config.get_config())
  config.num_steps = 10
  first = train_and_evaluate(config, str(tmp_path))
  again = train_and_evaluate(config, str(tmp_path))
  assert again['already_finished'] and again['validation'] == first['validation']
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert {r['split'] for r in records} == {'train', 'validation', 'cost'}
  assert os.listdir(tmp_path / 'tensorboard')


@pytest.mark.parametrize('field,value,message', [
    ('batch_size', 0, 'config.batch_size must be a positive integer'),
    ('num_steps', -1, 'config.num_steps must be a positive integer'),
])
def test_bad_config_leaves_no_workdir(tmp_path, field, value, message):
  config = mlp_config.get_config()
  config[field] = value
  with pytest.raises(UserInputError, match=message):
    train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_model_that_does_not_fit_the_task_is_rejected(tmp_path):
  config = transformer_config.get_config()
  config.data.name = 'digits'
  with pytest.raises(UserInputError, match="model 'transformer' does not do classification"):
    train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


class _NaNBatchAt:
  """The training iterator, with the batch of step `bad_step` (1-based) made of NaNs."""

  def __init__(self, iterator, bad_step):
    self._iterator, self._bad_step, self._count = iterator, bad_step, 0

  def __next__(self):
    batch = next(self._iterator)
    self._count += 1
    if self._count == self._bad_step:
      batch = {**batch, 'inputs': np.full_like(batch['inputs'], np.nan)}
    return batch

  def get_state(self):
    return self._iterator.get_state()

  def set_state(self, state):
    self._iterator.set_state(state)


def _nan_config(monkeypatch, bad_step):
  real = data.train_batches
  monkeypatch.setattr(data, 'train_batches',
                      lambda *a, **k: _NaNBatchAt(real(*a, **k), bad_step))
  config = mlp_config.get_config()
  config.num_steps, config.log_every, config.checkpoint_every, config.eval_every = 30, 4, 5, 30
  return config


def test_nan_batch_stops_the_run_naming_the_step_and_last_good_checkpoint(tmp_path, monkeypatch):
  config = _nan_config(monkeypatch, bad_step=13)
  with pytest.raises(NonFiniteError) as error:
    train_and_evaluate(config, str(tmp_path))
  checkpoints = tmp_path / 'checkpoints'
  assert 'NaN or infinite at step 13;' in str(error.value)
  assert f'Last good checkpoint: {checkpoints / "10"} (step 10)' in str(error.value)
  assert sorted(os.listdir(checkpoints)) == ['10', '5']  # nothing saved after the bad step
  logged = [json.loads(line)['step'] for line in open(tmp_path / 'metrics.jsonl')]
  assert logged == [4, 8, 12]


def test_nan_batch_is_skipped_and_counted_when_configured(tmp_path, monkeypatch):
  config = _nan_config(monkeypatch, bad_step=13)
  config.skip_nonfinite_updates = True
  train_and_evaluate(config, str(tmp_path))
  train = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  train = {r['step']: r for r in train if r['split'] == 'train'}
  assert [train[s]['skipped_updates'] for s in (12, 16, 20)] == [0, 1, 0]
  assert all(math.isfinite(r['loss']) for r in train.values())
  assert train[30]['loss'] < train[4]['loss']


def test_same_seed_gives_identical_losses_and_another_seed_does_not(tmp_path):
  def losses(workdir, seed):
    config = mlp_config.get_config()
    config.num_steps, config.log_every, config.eval_every, config.seed = 40, 5, 40, seed
    train_and_evaluate(config, str(workdir))
    return [r['loss'] for r in map(json.loads, open(workdir / 'metrics.jsonl'))
            if r['split'] == 'train']

  first = losses(tmp_path / 'a', 0)
  assert losses(tmp_path / 'b', 0) == first
  assert losses(tmp_path / 'c', 1) != first


def test_resume_with_other_shapes_is_refused_and_leaves_the_workdir_as_it_was(tmp_path):
  config = _quiet(mlp_config.get_config())
  config.num_steps, config.eval_every = 10, 10
  train_and_evaluate(config, str(tmp_path))
  before = {p: (tmp_path / p).read_bytes() for p in ('config.json', 'metrics.jsonl', 'summary.json')}
  config.model.hidden_sizes = (32,)
  with pytest.raises(UserInputError, match=r'other values of model.hidden_sizes: \[128\] -> \[32\];'):
    train_and_evaluate(config, str(tmp_path))
  assert {p: (tmp_path / p).read_bytes() for p in before} == before
  config.model.hidden_sizes = (128,)
  config.num_steps, config.log_every = 20, 5  # safe: longer, logged more often
  assert train_and_evaluate(config, str(tmp_path))['cost']['step'] == 20


class _Untouchable:
  """A split that fails the test the moment anything reads it."""

  def __len__(self):
    raise AssertionError('training read the length of the test split')

  def __getitem__(self, index):
    raise AssertionError(f'training read example {index} of the test split')


def test_training_never_reads_the_test_split(tmp_path, monkeypatch):
  load = trained_lib.load_dataset

  def without_test(config):
    dataset = load(config)
    return dataclasses.replace(dataset, test=_Untouchable())

  monkeypatch.setattr(trained_lib, 'load_dataset', without_test)
  config = _quiet(mlp_config.get_config())
  config.num_steps, config.eval_every, config.checkpoint_every = 20, 10, 10
  summary = train_and_evaluate(config, str(tmp_path))
  # It did evaluate, on the validation split (180 of the 1,797 digits).
  records = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert [r['step'] for r in records if r['split'] == 'validation'] == [10, 20]
  assert summary['validation']['loss'] == records[-2]['loss']
  with pytest.raises(AssertionError, match='test split'):  # the guard itself works
    evaluate_trained(trained_lib.load_trained(str(tmp_path)), 'test')


def _tiny_multitask():
  config = multitask_config.get_config()
  config.model.update(num_layers=1, d_model=32, num_heads=2)
  config.data.seq_len = 32
  config.batch_size = 8
  config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = 30, 10, 15, 10
  config.optimizer.warmup_steps = 5
  config.optimizer.learning_rate = 1e-2
  config.eval_batches = 2
  config.strategy = 'single'
  return config


# Slow (-m slow): three runs; the per-task reports are also checked by a command test.
@pytest.mark.slow
def test_multitask_run_reports_each_task_and_resumes_to_identical_parameters(tmp_path):
  config = _tiny_multitask()
  summary = train_and_evaluate(config, str(tmp_path / 'straight'))
  assert summary['cost']['task'] == 'multitask'
  records = [json.loads(line) for line in open(tmp_path / 'straight' / 'metrics.jsonl')]
  train = {r['step']: r for r in records if r['split'] == 'train'}
  assert {'loss', 'lm/loss', 'genre/loss', 'genre/accuracy'} <= set(train[10])
  assert train[30]['lm/loss'] < train[10]['lm/loss'] - 0.5  # it learns (4.2 -> 3.4 nats seen)
  validation = [r for r in records if r['split'] == 'validation']
  assert [r['step'] for r in validation] == [15, 30]
  for record in validation:  # both weights are 1
    assert math.isclose(record['loss'], record['lm/loss'] + record['genre/loss'], rel_tol=1e-6)
    assert 0 <= record['genre/accuracy'] <= 1 and record['lm/bits_per_char'] > 0
  with pytest.raises(UserInputError, match='is a multi-task run .tasks genre, lm.; this command'):
    trained_lib.load_trained(str(tmp_path / 'straight'))  # unless the caller handles one
  test = evaluate_trained(
      trained_lib.load_trained(str(tmp_path / 'straight'), allow_multitask=True), 'test')
  dataset = load_dataset(config)
  assert test['examples'] == {'genre': len(dataset.test['genre']), 'lm': len(dataset.test['lm'])}
  assert {'loss', 'lm/bits_per_char', 'genre/accuracy', 'genre/f1'} <= set(test['metrics'])

  train_until_crash(config, str(tmp_path / 'resumed'), 25)
  train_and_evaluate(config, str(tmp_path / 'resumed'))
  final = [trained_lib.load_trained(str(tmp_path / run), allow_multitask=True).params
           for run in ('straight', 'resumed')]
  jax.tree.map(np.testing.assert_array_equal, *final)
