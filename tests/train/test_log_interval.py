import jax.numpy as jnp
import numpy as np

from bigmodel_jax.train import log_interval
from bigmodel_jax.train.log_interval import LogInterval


def _metrics(loss, nonfinite=0):
  return {'loss': jnp.float32(loss), 'grad_norm': jnp.float32(2 * loss),
          'nonfinite': jnp.int32(nonfinite)}


def _shapes():
  return {k: jnp.zeros((), v.dtype) for k, v in _metrics(0.0).items()}


def test_means_leave_out_nonfinite_steps_and_name_the_first():
  interval = LogInterval.empty(_shapes())
  for step, (loss, bad) in enumerate([(1.0, 0), (np.nan, 1), (3.0, 0), (np.inf, 1)], start=11):
    interval = log_interval.add(interval, _metrics(loss, bad), jnp.int32(step))
  assert interval.means() == {'loss': 2.0, 'grad_norm': 4.0}
  assert int(interval.finite_steps) == 2 and int(interval.nonfinite_steps) == 2
  assert int(interval.first_nonfinite_step) == 12


def test_json_round_trip_is_bit_exact():
  interval = LogInterval.empty(_shapes())
  for step, loss in enumerate([0.1, 0.2, 1 / 3, 1e-7], start=1):
    interval = log_interval.add(interval, _metrics(loss), jnp.int32(step))
  restored = LogInterval.from_json(interval.to_json())
  for key in ('loss', 'grad_norm'):
    assert restored.sums[key].dtype == jnp.float32
    assert np.asarray(restored.sums[key]).tobytes() == np.asarray(interval.sums[key]).tobytes()
  # Continuing from the restored sums gives the same bits as continuing the original.
  a = log_interval.add(interval, _metrics(0.7), jnp.int32(5))
  b = log_interval.add(restored, _metrics(0.7), jnp.int32(5))
  assert a.means() == b.means()
  assert int(restored.finite_steps) == 4 and int(restored.first_nonfinite_step) == -1
