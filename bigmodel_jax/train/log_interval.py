"""The running sums behind each logged training record, saved with every checkpoint.

The host reads metrics only every `log_every` steps; in between, each step's metrics are added on
device. A checkpoint can fall inside an interval (a forced save on preemption, `checkpoint_every`
not a multiple of `log_every`), so the partial sums are saved with it: a resumed run then logs
bit-identical averages to a run that never stopped.

Steps whose loss or gradients were not finite (their update is skipped, see `step`) are counted
and left out of the sums, so the logged averages stay finite when such updates are skipped.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class LogInterval:
  sums: dict[str, jax.Array]
  finite_steps: jax.Array
  nonfinite_steps: jax.Array
  first_nonfinite_step: jax.Array  # the step number (1-based, as logged) of the first, or -1

  @classmethod
  def empty(cls, metric_shapes: dict[str, jax.ShapeDtypeStruct]) -> 'LogInterval':
    return cls(sums={k: jnp.zeros(s.shape, s.dtype) for k, s in metric_shapes.items()
                     if k != 'nonfinite'},
               finite_steps=jnp.zeros((), jnp.int32), nonfinite_steps=jnp.zeros((), jnp.int32),
               first_nonfinite_step=jnp.full((), -1, jnp.int32))

  def to_json(self) -> dict[str, Any]:
    """Exact: float32 and int32 values survive the round trip through JSON's float64."""
    host = jax.device_get(self)
    return {'sums': {k: {'dtype': str(v.dtype), 'value': np.asarray(v).tolist()}
                     for k, v in host.sums.items()},
            'finite_steps': int(host.finite_steps), 'nonfinite_steps': int(host.nonfinite_steps),
            'first_nonfinite_step': int(host.first_nonfinite_step)}

  @classmethod
  def from_json(cls, value: dict[str, Any]) -> 'LogInterval':
    return cls(sums={k: jnp.asarray(np.asarray(v['value'], v['dtype']))
                     for k, v in value['sums'].items()},
               finite_steps=jnp.asarray(value['finite_steps'], jnp.int32),
               nonfinite_steps=jnp.asarray(value['nonfinite_steps'], jnp.int32),
               first_nonfinite_step=jnp.asarray(value['first_nonfinite_step'], jnp.int32))

  def means(self) -> dict[str, float]:
    """The averages over the interval's finite steps (NaN if there were none)."""
    host = jax.device_get(self)
    return {k: float(v) / int(host.finite_steps) if host.finite_steps else float('nan')
            for k, v in host.sums.items()}


@jax.jit
def add(interval: LogInterval, metrics: dict[str, jax.Array], step: jax.Array) -> LogInterval:
  """`interval` plus the metrics of step `step` (1-based); one dispatch, no host sync."""
  finite = metrics['nonfinite'] == 0
  sums = {k: jnp.where(finite, interval.sums[k] + v, interval.sums[k])
          for k, v in metrics.items() if k != 'nonfinite'}
  first = jnp.where((interval.first_nonfinite_step < 0) & ~finite, step,
                    interval.first_nonfinite_step)
  return LogInterval(sums=sums, finite_steps=interval.finite_steps + finite.astype(jnp.int32),
                     nonfinite_steps=interval.nonfinite_steps + (~finite).astype(jnp.int32),
                     first_nonfinite_step=first)
