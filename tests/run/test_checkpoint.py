"""Checkpoints on disk: checksums, torn saves, corrupt steps, and that nothing good is deleted early."""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigmodel_jax.run import checkpoint as checkpoint_lib
from bigmodel_jax.run.checkpoint import Checkpointer
from bigmodel_jax.train.state import TrainState


def _state(step: int) -> TrainState:
  return TrainState(step=jnp.int32(step), params={'w': jnp.arange(1000.0) * step},
                    opt_state={'mu': jnp.full((3,), float(step))}, rng=jax.random.PRNGKey(0))


def _abstract():
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), _state(0))


def _save_steps(directory, steps, keep=5):
  checkpointer = Checkpointer(str(directory), keep=keep)
  for step in steps:
    checkpointer.save(step, _state(step), data={'position': step}, log={'sums': {}, 'step': step})
  checkpointer.close()


def _restore(directory):
  checkpointer = Checkpointer(str(directory), keep=5)
  try:
    restored = checkpointer.restore_latest(_abstract(), ('data', 'log'))
    if restored is None:
      return None
    step, state, items = restored
    return step, state, items['data'], items['log']
  finally:
    checkpointer.close()


def _largest_array_file(step_dir):
  manifest = json.load(open(os.path.join(step_dir, checkpoint_lib.MANIFEST)))
  name = max(manifest, key=lambda n: manifest[n]['bytes'])
  return os.path.join(step_dir, name)


def test_every_committed_step_carries_matching_checksums(tmp_path):
  _save_steps(tmp_path / 'ckpt', [1, 2])
  for step in (1, 2):
    step_dir = tmp_path / 'ckpt' / str(step)
    manifest = json.load(open(step_dir / checkpoint_lib.MANIFEST))
    assert any(name.startswith('state/') for name in manifest)
    assert any(name.startswith('data/') for name in manifest)
    assert checkpoint_lib.verify_manifest(str(step_dir)) is None
  step, state, data_state, log_state = _restore(tmp_path / 'ckpt')
  assert step == 2 and data_state == {'position': 2} and log_state['step'] == 2
  np.testing.assert_array_equal(state.params['w'], np.arange(1000.0) * 2)


@pytest.mark.parametrize('damage', ['truncate', 'flip_byte', 'delete'])
def test_corrupt_newest_step_is_reported_moved_aside_and_previous_used(tmp_path, caplog, damage):
  _save_steps(tmp_path / 'ckpt', [1, 2])
  newest = str(tmp_path / 'ckpt' / '2')
  victim = _largest_array_file(newest)
  if damage == 'truncate':
    with open(victim, 'r+b') as f:
      f.truncate(os.path.getsize(victim) // 2)
  elif damage == 'flip_byte':
    with open(victim, 'r+b') as f:
      f.seek(os.path.getsize(victim) // 2)
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0xFF]))
  else:
    os.remove(victim)
  assert checkpoint_lib.verify_manifest(newest) is not None

  with caplog.at_level(logging.WARNING):
    step, state, data_state, _ = _restore(tmp_path / 'ckpt')
  assert step == 1 and data_state == {'position': 1}
  np.testing.assert_array_equal(state.params['w'], np.arange(1000.0))
  assert f'Checkpoint {newest} is corrupt' in caplog.text
  # Moved, not deleted: the bytes are still there for a post-mortem.
  assert sorted(os.listdir(tmp_path / 'ckpt.corrupt')) == ['2']
  assert not os.path.exists(newest)


def test_all_steps_corrupt_gives_none(tmp_path):
  _save_steps(tmp_path / 'ckpt', [1])
  os.remove(os.path.join(tmp_path / 'ckpt' / '1', checkpoint_lib.MANIFEST))
  assert _restore(tmp_path / 'ckpt') is None
  assert os.listdir(tmp_path / 'ckpt.corrupt') == ['1']


def test_save_killed_half_way_is_ignored(tmp_path):
  _save_steps(tmp_path / 'ckpt', [1])
  # What a kill during Orbax's write leaves: a temporary directory that was never renamed.
  torn = tmp_path / 'ckpt' / '2.orbax-checkpoint-tmp'
  (torn / 'state').mkdir(parents=True)
  (torn / 'state' / 'manifest.ocdbt').write_bytes(b'\0' * 7)
  step, _, data_state, _ = _restore(tmp_path / 'ckpt')
  assert step == 1 and data_state == {'position': 1}
  assert not (tmp_path / 'ckpt.corrupt').exists()


def test_old_steps_are_deleted_only_after_the_newer_one_is_complete(tmp_path, monkeypatch):
  seen_at_commit = {}
  write_manifest = checkpoint_lib.write_manifest

  def record(step_dir):  # called when the new step's files are complete, before its commit
    seen_at_commit[os.path.basename(step_dir)] = sorted(os.listdir(tmp_path / 'ckpt'))
    write_manifest(step_dir)

  monkeypatch.setattr(checkpoint_lib, 'write_manifest', record)
  _save_steps(tmp_path / 'ckpt', [1, 2, 3, 4], keep=2)
  assert seen_at_commit['3.orbax-checkpoint-tmp'] == ['1', '2', '3.orbax-checkpoint-tmp']
  assert seen_at_commit['4.orbax-checkpoint-tmp'] == ['2', '3', '4.orbax-checkpoint-tmp']
  assert sorted(os.listdir(tmp_path / 'ckpt')) == ['3', '4']


def test_params_for_inference_skip_a_corrupt_newest_step(tmp_path):
  _save_steps(tmp_path / 'ckpt', [1, 2])
  os.remove(_largest_array_file(str(tmp_path / 'ckpt' / '2')))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = {'w': jax.ShapeDtypeStruct((1000,), jnp.float32, sharding=device)}
  params, step = checkpoint_lib.latest_params(str(tmp_path / 'ckpt'), abstract)
  assert step == 1
  np.testing.assert_array_equal(params['w'], np.arange(1000.0))
  assert os.path.isdir(tmp_path / 'ckpt' / '2')  # reading never moves anything


def test_the_best_validation_step_is_kept_beside_the_newest(tmp_path):
  checkpointer = Checkpointer(str(tmp_path / 'ckpt'), keep=2)
  losses = {1: 0.9, 2: 0.3, 3: 0.5, 4: None, 5: 0.7, 6: None}
  for step, loss in losses.items():
    checkpointer.save(step, _state(step), validation_loss=loss, data={'position': step})
    checkpointer.close()  # each save committed before the next decides what to delete
    checkpointer = Checkpointer(str(tmp_path / 'ckpt'), keep=2)
  checkpointer.close()
  # The newest two (5, 6) and the lowest validation loss (step 2).
  assert checkpoint_lib.saved_steps(str(tmp_path / 'ckpt')) == [2, 5, 6]


def test_in_a_bucket_a_truncated_array_object_is_detected_set_aside_and_previous_used(
    gcs_bucket, caplog):
  from etils import epath  # pylint: disable=import-outside-toplevel
  directory = f'{gcs_bucket}/run/checkpoints'
  _save_steps(directory, [1, 2])
  assert checkpoint_lib.saved_steps(directory) == [1, 2]
  newest = epath.Path(directory, '2')
  manifest = json.loads((newest / checkpoint_lib.MANIFEST).read_text())
  name = max(manifest, key=lambda n: manifest[n]['bytes'])
  chunk = (newest / name).read_bytes()
  (newest / name).write_bytes(chunk[:len(chunk) // 2])  # an object rewritten with half its bytes

  with caplog.at_level(logging.WARNING):
    step, state, _, _ = _restore(directory)
  assert step == 1
  np.testing.assert_array_equal(state.params['w'], np.arange(1000.0))
  assert (f'Checkpoint {directory}/2 is corrupt: {name} has {len(chunk) // 2} bytes, '
          f'{len(chunk)} were written') in caplog.text
  # Set aside whole (every object, the damaged one as it was found), never deleted.
  aside = epath.Path(f'{directory}{checkpoint_lib.CORRUPT_SUFFIX}', '2')
  assert (aside / name).read_bytes() == chunk[:len(chunk) // 2]
  assert (aside / checkpoint_lib.MANIFEST).exists()
  assert checkpoint_lib.saved_steps(directory) == [1]
  assert not newest.exists()


def test_in_a_bucket_a_quarantine_interrupted_after_the_commit_file_leaves_no_readable_step(
    gcs_bucket):
  from etils import epath  # pylint: disable=import-outside-toplevel
  directory = f'{gcs_bucket}/run/checkpoints'
  _save_steps(directory, [1, 2])
  # Killed inside the quarantine of step 2: its objects copied aside, its commit file deleted,
  # the rest not yet.
  (epath.Path(directory, '2') / 'commit_success.txt').unlink()
  assert checkpoint_lib.saved_steps(directory) == [1]
  step, _, _, _ = _restore(directory)
  assert step == 1
  assert not epath.Path(directory, '2').exists()  # Orbax removed the uncommitted step
