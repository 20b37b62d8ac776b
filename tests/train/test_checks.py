"""Tests for bigmodel_jax.train.checks.validate_config: the one place a run's config is checked.

The range checks of the data options and of the batch size used to live in the data loaders
and the pipeline; these are their cases, now raised before any data is read.
"""

import importlib
import time

import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax import data
from bigmodel_jax.train.checks import check_data_fits, validate_config


def _config(model: str = 'mlp', **fields):
  """The config of `model` (the MLP's by default) with `fields` ('data.seq_len', ...) set."""
  config = importlib.import_module(f'experiments.configs.{model}').get_config()
  for path, value in fields.items():
    *parents, key = path.split('.')
    node = config
    for parent in parents:
      node = node[parent]
    node[key] = value
  return config


def test_the_mlp_config_passes():
  validate_config(_config())
  validate_config(_config(**{'data.name': 'shakespeare', 'data.tokenizer': 'byte',
                             'data.seq_len': 1, 'eval_batches': 0}))


@pytest.mark.parametrize('fields, message', [
    ({'data.seq_len': 0}, r'^config.data.seq_len must be a positive integer, got 0$'),
    ({'data.tokenizer': 'unigram'},
     r"^config.data.tokenizer='unigram' is not one of: byte, char, word, bpe$"),
    ({'data.tokenizer': 'bpe', 'data.vocab_size': 100},
     r'^config.data.vocab_size must be an integer >= 257 for the bpe tokenizer, got 100$'),
    ({'data.test_fraction': 1.0}, r'^config.data.test_fraction must be a number strictly '
                                  r'between 0 and 1, got 1.0$'),
    ({'data.test_fraction': 1.5}, r'^config.data.test_fraction must be a number strictly '
                                  r'between 0 and 1, got 1.5$'),
    ({'data.test_fraction': 0.0}, r'^config.data.test_fraction must be a number strictly '
                                  r'between 0 and 1, got 0.0$'),
    ({'data.validation_fraction': 0.0}, r'^config.data.validation_fraction must be a number '
                                        r'strictly between 0 and 1, got 0.0$'),
    ({'data.validation_fraction': 1.5}, r'^config.data.validation_fraction must be a number '
                                        r'strictly between 0 and 1, got 1.5$'),
    ({'data.test_fraction': 0.6, 'data.validation_fraction': 0.4},
     r'^config.data.test_fraction \+ config.data.validation_fraction must be below 1 \(some '
     r'examples must train\), got 0.6 \+ 0.4$'),
    ({'seed': -1}, r'^config.seed must be a non-negative integer, got -1$'),
    ({'data.split_seed': -1}, r'^config.data.split_seed must be None \(config.seed\) or a '
                              r'non-negative integer, got -1$'),
    ({'batch_size': 0}, r'^config.batch_size must be a positive integer, got 0$'),
    ({'batch_size': -4}, r'^config.batch_size must be a positive integer, got -4$'),
    ({'eval_batches': -1}, r'^config.eval_batches must be an integer >= 0 \(0 = the whole '
                           r'validation split\), got -1$'),
    ({'optimizer.name': 'muon', 'optimizer.muon_beta': 1.0},
     r'^config.optimizer.muon_beta must be in \[0, 1\), got 1.0$'),
])
def test_bad_options_fail_fast_in_one_line(fields, message):
  start = time.perf_counter()
  with pytest.raises(UserInputError, match=message) as error:
    validate_config(_config(**fields))
  assert time.perf_counter() - start < 1.0
  assert error.value.subject is None  # The problem names the config field itself.
  assert '\n' not in str(error.value)


def test_a_fractional_batch_size_is_refused():
  # ConfigDict keeps a field's type: 2.5 cannot be put in the int batch_size field, so the
  # check sees it only through a config built otherwise.
  config = _config()
  with config.unlocked():
    del config['batch_size']
    config.batch_size = 2.5
  with pytest.raises(UserInputError, match=r'^config.batch_size must be an integer, got 2.5$'):
    validate_config(config)


def test_unknown_dataset_names_the_known_ones():
  with pytest.raises(UserInputError) as error:
    validate_config(_config(**{'data.name': 'imagenet'}))
  assert (error.value.subject, error.value.value) == ('dataset', 'imagenet')
  assert error.value.problem.startswith('is not known; choose one of: digits, shakespeare, ')
  assert str(error.value).startswith('dataset imagenet: is not known; choose one of: ')


@pytest.mark.parametrize('fields, message', [
    ({'adversarial.eps': -0.1}, r'^config.adversarial.eps must be a number >= 0, got -0.1$'),
    ({'adversarial.steps': 0}, r'^config.adversarial.steps must be a positive integer, got 0$'),
    ({'adversarial.norm': 'l1'}, r"^config.adversarial.norm='l1' is unknown; choose one of: "
                                 r'linf, l2$'),
    ({'adversarial.fraction': 0.0}, r'^config.adversarial.fraction must be in \(0, 1\], got '
                                    r'0.0$'),
    ({'adversarial.step_size': 0.0}, r'^config.adversarial.step_size must be positive'),
])
def test_bad_adversarial_training_settings_name_the_field(fields, message):
  with pytest.raises(UserInputError, match=message):
    validate_config(_config(**fields))


def test_adversarial_training_is_refused_for_inputs_that_are_not_images():
  config = _config(**{'adversarial.enabled': True, 'data.name': 'regression'})
  validate_config(config)  # the fields are fine; the data decides
  spec = data.load_dataset('regression').spec
  with pytest.raises(UserInputError, match=r"^config.adversarial.enabled=True needs an image "
                     r"classifier; dataset 'regression' has features inputs for regression$"):
    check_data_fits(config, spec)
  check_data_fits(_config(**{'adversarial.enabled': True}), data.load_dataset('digits').spec)


def _multitask(**fields):
  return _config('transformer_multitask', **fields)


@pytest.mark.parametrize('fields, message', [
    ({'tasks.genre.dataset': 'imagenet'},
     r"^config.tasks.genre.dataset='imagenet' is not known; choose one of: digits, "),
    ({'tasks.genre.head': 'lm'}, r"^config.tasks.genre.head='lm' does not fit dataset "
                                 r"'shakespeare_genre' \(classification\); heads for it: mean, "
                                 r'last$'),
    ({'tasks.lm.head': 'pooler'}, r"^config.tasks.lm.head='pooler' is unknown; choose one of: "
                                  r'lm, mean, last$'),
    ({'tasks.genre.dataset': 'regression', 'tasks.genre.head': 'mean'},
     r"^config.tasks.genre.head='mean' does not fit dataset 'regression' \(regression\); no "
     r'head does regression$'),
    ({'tasks.lm.weight': 0.0}, r'^config.tasks.lm.weight must be a positive number, got 0.0$'),
    ({'data.name': 'shakespeare'}, r"^config.data.name='shakespeare': a multi-task run reads the "
                                   r'datasets of config.tasks'),
    ({'dp.enabled': True}, r'^config.dp.enabled=True trains classifiers and regressors'),
])
def test_bad_tasks_are_named_by_their_field(fields, message):
  validate_config(_multitask())
  with pytest.raises(UserInputError, match=message) as error:
    validate_config(_multitask(**fields))
  assert error.value.subject is None and '\n' not in str(error.value)


def test_task_names_and_fields_are_checked():
  config = _multitask()
  config.tasks['Genre 2'] = dict(config.tasks.genre)
  with pytest.raises(UserInputError, match=r"^config.tasks.Genre 2: a task name is lower-case"):
    validate_config(config)
  config = _multitask()
  config.tasks.extra = {'dataset': 'shakespeare'}
  with pytest.raises(UserInputError, match=r'^config.tasks.extra.head is missing$'):
    validate_config(config)
  with pytest.raises(UserInputError, match=r"^config.data.name='multitask' needs config.tasks"):
    validate_config(_config(**{'data.name': 'multitask'}))
