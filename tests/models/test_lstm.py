import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.models.lstm import LSTMClassifier, LSTMConfig


@pytest.mark.parametrize('bidirectional', [False, True])
def test_padding_changes_nothing_and_order_matters(bidirectional):
  model = LSTMClassifier(LSTMConfig(vocab_size=20, num_outputs=3, embed_dim=8, hidden_size=16,
                                    bidirectional=bidirectional))
  tokens = jnp.array([[5, 6, 7, 0, 0, 0], [7, 6, 5, 0, 0, 0]], jnp.int32)
  params = model.init(jax.random.PRNGKey(0), tokens)['params']
  assert params['head']['kernel'].shape == ((32 if bidirectional else 16), 3)
  logits = model.apply({'params': params}, tokens)
  shorter = model.apply({'params': params}, tokens[:, :3])
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, shorter, atol=1e-6)
  assert not np.allclose(logits[0], logits[1])  # a recurrence, not a bag of words


def test_bad_size_names_the_field():
  with pytest.raises(UserInputError, match='config.model.hidden_size=0'):
    LSTMConfig(vocab_size=20, num_outputs=2, hidden_size=0)
