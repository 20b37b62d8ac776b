import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax.tasks import losses


def test_softmax_cross_entropy_matches_log_softmax():
  logits = jax.random.normal(jax.random.PRNGKey(0), (5, 7))
  labels = jnp.array([0, 3, 6, 2, 2])
  expected = -np.take_along_axis(np.asarray(jax.nn.log_softmax(logits)), labels[:, None], -1)[:, 0]
  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), expected, rtol=1e-6)


def test_softmax_cross_entropy_is_float32_for_bfloat16_logits():
  logits = jnp.ones((2, 3), jnp.bfloat16)
  out = losses.softmax_cross_entropy(logits, jnp.array([0, 1]))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, np.log(3.0), rtol=1e-6)


def test_mean_squared_error_by_hand():
  predictions = jnp.array([[1.0, 2.0], [0.0, 0.0]])
  targets = jnp.array([[1.0, 0.0], [3.0, 4.0]])
  np.testing.assert_allclose(losses.mean_squared_error(predictions, targets), [2.0, 12.5])


def test_binary_cross_entropy_matches_formula():
  logits = jnp.array([[2.0, -1.0]])
  labels = jnp.array([[1.0, 0.0]])
  sigmoid = 1 / (1 + np.exp(-np.array([2.0, -1.0])))
  expected = -(np.log(sigmoid[0]) + np.log(1 - sigmoid[1])) / 2
  np.testing.assert_allclose(losses.binary_cross_entropy(logits, labels), [expected], rtol=1e-6)
