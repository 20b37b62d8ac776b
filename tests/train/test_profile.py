"""The profiler hook: a trace of exactly the configured steps, and nothing at all when off."""

import glob
import gzip
import json
import os

import pytest

from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train import hooks
from bigmodel_jax.train import loop as loop_lib
from bigmodel_jax.train.loop import train_and_evaluate
from experiments.configs import mlp as mlp_config


def _config(**profile):
  config = mlp_config.get_config()
  config.strategy = 'single'
  config.num_steps, config.log_every, config.eval_every, config.checkpoint_every = 12, 4, 12, 12
  config.profile.update(profile)
  return config


def _traced_steps(workdir) -> list[list[int]]:
  """For each trace of the run, oldest first: the step numbers of its 'train' step markers."""
  traces = sorted(glob.glob(os.path.join(workdir, 'profile', 'plugins', 'profile', '*',
                                         'perfetto_trace.json.gz')))
  steps = []
  for path in traces:
    xplanes = glob.glob(os.path.join(os.path.dirname(path), '*.xplane.pb'))  # TensorBoard's
    assert len(xplanes) == 1 and os.path.getsize(xplanes[0]) > 1000, xplanes
    with gzip.open(path) as f:
      trace = json.load(f)
    events = trace['traceEvents'] if isinstance(trace, dict) else trace
    steps.append(sorted(int(e['args']['step_num']) for e in events
                        if e.get('name') == 'train' and 'step_num' in e.get('args', {})))
  return steps


def test_profiled_run_writes_a_trace_of_exactly_the_profiled_steps(tmp_path):
  config = _config(start_step=1, num_steps=2)  # from the first step: starts before the loop
  config.num_steps = 6
  train_and_evaluate(config, str(tmp_path))
  assert _traced_steps(tmp_path) == [[1, 2]]
  # Resuming with other profile fields is allowed (tracing does not change what a step
  # computes); a window past the end stops at the run's last step.
  train_and_evaluate(_config(start_step=9, num_steps=50), str(tmp_path))
  assert _traced_steps(tmp_path) == [[1, 2], [9, 10, 11, 12]]


def test_profiling_off_adds_no_hook_and_writes_no_trace(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(hooks.Profile, '__call__', lambda self, loop: calls.append(loop.step))
  monkeypatch.setattr(hooks.Profile, 'due', lambda self, loop: calls.append(loop.step) or True)
  train_and_evaluate(_config(), str(tmp_path))
  assert not calls and not (tmp_path / 'profile').exists()
  assert loop_lib._profiler(_config(), str(tmp_path)) is None


@pytest.mark.parametrize('field,value', [('start_step', 0), ('num_steps', -1),
                                         ('start_step', True)])
def test_bad_profile_fields_are_refused(tmp_path, field, value):
  config = _config()
  config.profile[field] = value
  with pytest.raises(UserInputError, match=f'config.profile.{field} must be an integer'):
    train_and_evaluate(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
