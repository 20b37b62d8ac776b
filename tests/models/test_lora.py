import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models import lora
from bigmodel_jax.models.transformer import TransformerClassifier, TransformerConfig

_SIZES = dict(vocab_size=20, max_len=8, num_outputs=3, num_layers=2, d_model=16, num_heads=2)
_TOKENS = jnp.array([[1, 2, 3, 4, 0, 0, 0, 0], [5, 6, 7, 8, 9, 1, 2, 0]], jnp.int32)


# Scanned layers: the merge's leading layer axis too (the separate layout: the LoRA run test).
@pytest.mark.parametrize('scan_layers', [True])
def test_adapters_start_as_identity_and_merge_into_the_plain_model(scan_layers):
  model = TransformerClassifier(TransformerConfig(**_SIZES, lora_rank=2, lora_targets='.',
                                                  scan_layers=scan_layers))
  params = model.init(jax.random.PRNGKey(0), _TOKENS)['params']
  plain, start = lora.merged(model, params)
  assert plain.config.lora_rank == 0
  # lora_b starts at zero: the adapted model computes exactly the base model.
  np.testing.assert_array_equal(model.apply({'params': params}, _TOKENS),
                                plain.apply({'params': start}, _TOKENS))
  # The plain model's parameter tree is the LoRA one's without the adapters.
  flat = traverse_util.flatten_dict(params, sep='/')
  assert sum('lora_' in p for p in flat) == 2 * 6 * (1 if scan_layers else 2)  # a, b per layer
  assert jax.tree.map(jnp.shape, start) == jax.tree.map(
      jnp.shape, plain.init(jax.random.PRNGKey(0), _TOKENS)['params'])
  trained = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.05 if 'lora_b' in jax.tree_util.keystr(path) else x, params)
  _, merged = lora.merged(model, trained)
  got = plain.apply({'params': merged}, _TOKENS)
  np.testing.assert_allclose(got, model.apply({'params': trained}, _TOKENS), atol=1e-5)
  assert not np.allclose(got, model.apply({'params': params}, _TOKENS), atol=1e-3)


def test_trained_only_names_adapters_and_head():
  model = TransformerClassifier(TransformerConfig(**_SIZES, lora_rank=4))
  assert model.trained_only() == lora.TRAINED
  assert TransformerClassifier(TransformerConfig(**_SIZES)).trained_only() == ()


@pytest.mark.parametrize('fields, message', [
    ({'lora_rank': 2, 'lora_targets': 'embedding'}, "config.model.lora_targets='embedding'"),
    ({'lora_rank': -1}, 'config.model.lora_rank=-1'),
])
def test_bad_lora_settings_name_the_field(fields, message):
  with pytest.raises(UserInputError, match=message):
    TransformerConfig(**_SIZES, **fields)


def test_lora_on_a_model_without_transformer_dense_layers_is_refused():
  from bigmodel_jax import models  # pylint: disable=g-import-not-at-top
  from bigmodel_jax.data import spec as spec_lib  # pylint: disable=g-import-not-at-top
  spec = spec_lib.image_spec('digits', input_shape=(8, 8, 1), class_names=list('0123456789'))
  with pytest.raises(UserInputError, match=r"^unknown config.model field\(s\) lora_rank for model 'cnn'"):
    models.build_model({'name': 'cnn', 'lora_rank': 2}, spec)
