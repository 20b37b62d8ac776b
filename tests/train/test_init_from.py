"""Starting a run from another run's parameters: what is copied, where it lands, resume order."""

import shutil

import jax
import numpy as np
import pytest
from flax import traverse_util

from conftest import run_module
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer import serving
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train import init_from
from bigmodel_jax.train.loop import build_run, train_and_evaluate
from experiments.configs import mlp as mlp_config
from experiments.configs import transformer as lm_config
from experiments.configs import transformer_classifier as classifier_config


def _tiny(**overrides):
  config = classifier_config.get_config()
  config.model.num_layers = 1
  config.model.d_model = 32
  config.model.num_heads = 2
  config.data.seq_len = 16
  config.data.tokenizer = 'byte'
  config.batch_size = 8
  config.num_steps = 3
  config.log_every = config.eval_every = config.checkpoint_every = 3
  config.eval_batches = 1
  config.strategy = 'single'
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (config[section] if section else config)[field] = value
  return config


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('source'))
  train_and_evaluate(_tiny(), workdir)
  return workdir


def _flat(params):
  return traverse_util.flatten_dict(jax.device_get(params), sep='/')


def test_copies_matching_leaves_onto_fsdp_shardings_and_keeps_excluded_ones_fresh(source):
  config = _tiny(**{'init.workdir': source, 'init.exclude': ('^head/',), 'strategy': 'mesh',
                    'fsdp': True, 'seed': 7, 'model.mlp_ratio': 32})
  parts = build_run(config)
  plan = init_from.plan(config, parts.model, parts.dataset.spec)
  assert plan.step == 3
  # mlp_ratio differs from the source: the MLP's shapes do not match and stay fresh.
  assert plan.fresh == {'head/bias': 'excluded', 'head/kernel': 'excluded',
                        'block_0/mlp_in/bias': 'shape (1024,) != source (128,)',
                        'block_0/mlp_in/kernel': 'shape (32, 1024) != source (32, 128)',
                        'block_0/mlp_out/kernel': 'shape (1024, 32) != source (128, 32)'}
  assert len(plan.copied) == 17  # attention 8, norms 6, embeddings 2, mlp_out bias 1
  fresh = parts.strategy.init_state(parts.init).params
  params = init_from.load(plan, fresh)
  src = _flat(trained_lib.load_trained(source).params)
  got, new = _flat(params), _flat(fresh)
  for path in plan.copied:
    np.testing.assert_array_equal(got[path], src[path])
  for path in plan.fresh:
    np.testing.assert_array_equal(got[path], new[path])
  assert not np.array_equal(got['head/kernel'], src['head/kernel'])
  # Each copied leaf sits on the sharding of the leaf it replaced (FSDP splits the large ones).
  flat_fresh = traverse_util.flatten_dict(fresh, sep='/')
  for path, leaf in traverse_util.flatten_dict(params, sep='/').items():
    assert leaf.sharding == flat_fresh[path].sharding, path
  assert any(not leaf.sharding.is_fully_replicated
             for leaf in traverse_util.flatten_dict(params, sep='/').values())


@pytest.mark.slow  # two runs over the shared source run; -m slow
def test_own_checkpoint_comes_before_the_source(source, tmp_path):
  copy = str(tmp_path / 'source_copy')
  shutil.copytree(source, copy)
  workdir = str(tmp_path / 'run')
  config = _tiny(**{'init.workdir': copy, 'num_steps': 2, 'checkpoint_every': 2})
  train_and_evaluate(config, workdir)
  shutil.rmtree(copy)  # a resumed run never reads the source again
  config.num_steps = 4
  summary = train_and_evaluate(config, workdir)
  assert summary['cost']['step'] == 4


@pytest.mark.parametrize('overrides, message', [
    ({'init.workdir': '/nonexistent/run'}, 'no such directory'),
    ({'init.include': ('no_such_layer',)}, "'no_such_layer' matches no parameter"),
    ({'init.exclude': ('(',)}, 'is not a regex'),
])
def test_bad_source_or_regex_is_refused_before_anything_is_written(source, tmp_path, overrides,
                                                                   message):
  config = _tiny(**{'init.workdir': source, **overrides})
  workdir = tmp_path / 'run'
  with pytest.raises(UserInputError, match=message):
    train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_source_without_checkpoint_or_shapes_in_common_is_refused(source, tmp_path):
  empty = tmp_path / 'no_ckpt'
  shutil.copytree(source, empty)
  shutil.rmtree(empty / 'checkpoints')
  with pytest.raises(UserInputError, match='has no checkpoint'):
    train_and_evaluate(_tiny(**{'init.workdir': str(empty)}), str(tmp_path / 'a'))
  config = mlp_config.get_config()
  config.init.workdir = source
  with pytest.raises(UserInputError, match='no parameter of this model can be copied'):
    train_and_evaluate(config, str(tmp_path / 'b'))
  assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_command_line_words_a_missing_source_as_one_line(tmp_path):
  workdir = tmp_path / 'run'
  result = run_module('experiments.train', '--model=mlp', f'--workdir={workdir}',
                      '--config.init.workdir=/nonexistent/run')
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip().splitlines()[-1] == (
      "error: config.init.workdir='/nonexistent/run': no such directory")
  assert not workdir.exists()


def test_frozen_trunk_equals_the_source_bit_for_bit_after_50_steps(source, tmp_path):
  config = _tiny(**{'init.workdir': source, 'optimizer.freeze': ('^(?!head/)',),
                    'num_steps': 50, 'log_every': 25, 'eval_every': 50, 'checkpoint_every': 50})
  summary = train_and_evaluate(config, str(tmp_path))
  src = _flat(trained_lib.load_trained(source).params)
  got = _flat(trained_lib.load_trained(str(tmp_path)).params)
  for path in got:
    if path.startswith('head/'):
      assert not np.array_equal(got[path], src[path]), path
    else:
      np.testing.assert_array_equal(got[path], src[path], err_msg=path)
  assert summary['cost']['trainable_params'] == 32 * 3 + 3
  assert summary['cost']['params'] > 20 * summary['cost']['trainable_params']


@pytest.mark.slow  # ~40 s: training plus an export subprocess; the merge is unit-tested
def test_lora_fine_tune_trains_only_adapters_and_head_and_exports_merged(source, tmp_path):
  workdir = tmp_path / 'lora'
  config = _tiny(**{'init.workdir': source, 'model.lora_rank': 2, 'num_steps': 5,
                    'log_every': 5, 'eval_every': 5, 'checkpoint_every': 5})
  summary = train_and_evaluate(config, str(workdir))
  # Adapters on query and value (32 -> 2 heads x 16): a (32, 2) + b (2, 32), plus the head.
  assert summary['cost']['trainable_params'] == 2 * (32 * 2 + 2 * 32) + 32 * 3 + 3
  run = trained_lib.load_trained(str(workdir))
  src, got = _flat(trained_lib.load_trained(source).params), _flat(run.params)
  for path in got:
    if 'lora_' in path:
      assert path not in src
    elif not path.startswith('head/'):
      np.testing.assert_array_equal(got[path], src[path], err_msg=path)
  assert not np.any(got['block_0/attention/value/lora_b'] == 0)  # trained away from zero
  result = run_module('experiments.export', f'--workdir={workdir}', f'--output={tmp_path / "x"}')
  assert result.returncode == 0, result.stderr
  predict, artifact = serving.load_exported(str(tmp_path / 'x'))
  tokens = np.stack([run.spec.tokenizer.encode('To be, or not to be, that is th')[:16]] * 2)
  np.testing.assert_allclose(predict(tokens), run.model.apply({'params': run.params}, tokens),
                             atol=1e-5)
  assert artifact['model'] == 'transformer_classifier'


# Separate to scanned in the default run, scanned to separate in the slow one (-m slow).
@pytest.mark.parametrize('source_scan', [pytest.param(True, marks=pytest.mark.slow), False])
def test_scanned_and_separate_layers_initialise_each_other_to_the_same_function(tmp_path,
                                                                                source_scan):
  source = str(tmp_path / 'source')
  train_and_evaluate(_tiny(**{'model.num_layers': 2, 'model.scan_layers': source_scan}), source)
  config = _tiny(**{'init.workdir': source, 'model.num_layers': 2,
                    'model.scan_layers': not source_scan, 'seed': 3})
  parts = build_run(config)
  plan = init_from.plan(config, parts.model, parts.dataset.spec)
  assert plan.fresh == {} and plan.source_scanned is source_scan
  params = init_from.load(plan, parts.strategy.init_state(parts.init).params)
  assert ('blocks' in params) is not source_scan
  src = trained_lib.load_trained(source)
  tokens = np.stack([src.spec.tokenizer.encode('To be, or not to be, that is th')[:16]] * 2)
  np.testing.assert_allclose(parts.model.apply({'params': params}, tokens),
                             src.model.apply({'params': src.params}, tokens), atol=1e-5)


def test_char_vocabularies_are_matched_by_character(tmp_path):
  # The source's text lacks 'q' and has 'x', so every id after 'a' means another character.
  (tmp_path / 'source.txt').write_text('the cat sat on the mat, ax by cz. ' * 40)
  (tmp_path / 'target.txt').write_text('the quick cat sat on the mat, b c. ' * 40)
  source = str(tmp_path / 'source')
  lm = dict(num_layers=1, d_model=32, num_heads=2)
  train_and_evaluate(_lm(tmp_path / 'source.txt', **lm), source)
  config = _lm(tmp_path / 'target.txt', **lm)
  config.init.workdir = source
  parts = build_run(config)
  plan = init_from.plan(config, parts.model, parts.dataset.spec)
  assert plan.fresh == {} and init_from.TOKEN_EMBEDDING in plan.copied
  fresh = parts.strategy.init_state(parts.init).params
  params = init_from.load(plan, fresh)
  src = trained_lib.load_trained(source)
  src_vocab, vocab = src.spec.tokenizer.vocab, parts.dataset.spec.tokenizer.vocab
  assert src_vocab != vocab and 'q' in vocab and 'q' not in src_vocab
  got = np.asarray(params['token_embed']['embedding'])
  source_rows = np.asarray(src.params['token_embed']['embedding'])
  np.testing.assert_array_equal(got[0], source_rows[0])  # padding
  for i, char in enumerate(vocab, start=1):
    expected = (source_rows[src_vocab.index(char) + 1] if char in src_vocab
                else np.asarray(fresh['token_embed']['embedding'])[i])
    np.testing.assert_array_equal(got[i], expected, err_msg=char)
  # So the LM predicts the same text: the logits of shared characters are the source's.
  text = 'the cat sat on b'
  shared = [i for i, char in enumerate(vocab, start=1) if char in src_vocab]
  logits = parts.model.apply({'params': params}, parts.dataset.spec.tokenizer.encode(text)[None])
  src_logits = src.model.apply({'params': src.params}, src.spec.tokenizer.encode(text)[None])
  np.testing.assert_allclose(
      logits[..., shared], src_logits[..., [src_vocab.index(vocab[i - 1]) + 1 for i in shared]],
      atol=1e-5)


def _lm(path, **model):
  config = lm_config.get_config()
  config.data.name = f'textfile:{path}'
  config.data.seq_len = 16
  config.batch_size = 8
  config.num_steps = config.log_every = config.eval_every = config.checkpoint_every = 3
  config.eval_batches = 1
  config.strategy = 'single'
  config.model.update(model)
  return config


def test_a_source_run_in_a_bucket_initialises_a_run_in_a_bucket(gcs_bucket):
  source, workdir = f'{gcs_bucket}/source', f'{gcs_bucket}/tuned'
  train_and_evaluate(_tiny(), source)
  config = _tiny(**{'init.workdir': f'{source}:3', 'optimizer.freeze': ('^(?!head/)',)})
  train_and_evaluate(config, workdir)
  src = _flat(trained_lib.load_trained(source).params)
  got = _flat(trained_lib.load_trained(workdir).params)
  for path in got:  # the frozen trunk is the source's, read from the bucket
    if not path.startswith('head/'):
      np.testing.assert_array_equal(got[path], src[path], err_msg=path)
