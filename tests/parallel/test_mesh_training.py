"""A small transformer trains to the same numbers on every (data, fsdp, tensor) mesh.

Runs on the 8 simulated CPU devices of tests/conftest.py. The optimizer is SGD with momentum in
float32: its update is linear in the gradients, so meshes that sum the same products in another
order (the tensor axis adds partial matmuls, the batch axes add partial gradients) stay within
float32 rounding, which 20 steps of training grow to ~1e-6 relative on the loss. The tolerance,
1e-4 relative, is far above that and far below what a real bug does (a shard's gradient dropped
or counted twice, a head sharded on the wrong axis moves the loss by > 1e-2 within a few steps).
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from bigmodel_jax import tasks
from bigmodel_jax.config import MeshConfig
from bigmodel_jax.infer.generate import generate
from bigmodel_jax.models.transformer import TransformerConfig, TransformerLM, stack_layers
from bigmodel_jax.parallel import rules
from bigmodel_jax.run.checkpoint import Checkpointer
from bigmodel_jax.train import step as step_lib
from bigmodel_jax.train import strategies
from bigmodel_jax.train.state import create_train_state

VOCAB, LENGTH, BATCH, STEPS = 64, 16, 8, 20
RTOL = 1e-4
MESHES = [(8, 1, 1), (2, 2, 2), (1, 4, 2), (1, 2, 4), (1, 1, 8)]


def lm(**fields) -> TransformerLM:
  # 8 heads so that tensor=8 splits them; d_model 32 and mlp 128 divide by every axis size.
  return TransformerLM(TransformerConfig(vocab_size=VOCAB, max_len=LENGTH, num_outputs=VOCAB,
                                         num_layers=2, num_heads=8, d_model=32, **fields))


def batches(steps: int):
  """Sequences t, 5t + 1, ... (mod VOCAB) from random starts: each next token is learnable."""
  rng = np.random.default_rng(0)
  for _ in range(steps):
    tokens = [rng.integers(0, VOCAB, BATCH)]
    for _ in range(LENGTH):
      tokens.append((5 * tokens[-1] + 1) % VOCAB)
    tokens = np.stack(tokens, axis=1).astype(np.int32)
    yield {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:],
           'weights': np.ones(BATCH, np.float32)}


def strategy_for(model: TransformerLM, mesh: tuple[int, int, int] | None
                 ) -> strategies.Strategy:
  """'single' for None, else a 'mesh' strategy of (data, fsdp, tensor)."""
  axes = rules.param_axes(model, jnp.zeros((1, LENGTH), jnp.int32), train=False)
  if mesh is None:
    return strategies.create_strategy('single', param_axes=axes)
  data, fsdp, tensor = mesh
  return strategies.create_strategy('mesh', param_axes=axes,
                                    mesh=MeshConfig(data=data, fsdp=fsdp, tensor=tensor))


def train(model: TransformerLM, mesh, *, steps: int = STEPS, state=None, skip: int = 0):
  """Losses of `steps` steps (of the batch stream from `skip` on) and the final state."""
  task, tx = tasks.LanguageModeling(), optax.sgd(0.5, momentum=0.9)
  strategy = strategy_for(model, mesh)
  init = lambda: create_train_state(model, tx, jnp.zeros((1, LENGTH), jnp.int32), seed=0)
  if state is None:
    state = strategy.init_state(init)
  else:  # another mesh's state, moved onto this one's shardings
    state = jax.device_put(state, strategy.state_shardings(jax.eval_shape(init)))
  make_step = functools.partial(step_lib.make_train_step, model, task, tx)
  train_step, losses = None, []
  for host_batch in list(batches(skip + steps))[skip:]:
    batch = strategy.place_batch(host_batch)
    train_step = train_step or strategy.compile_train_step(make_step, state, batch)
    state, metrics = train_step(state, batch)
    losses.append(float(metrics['loss']))
  return np.array(losses), state, strategy


@functools.cache
def single(**fields):
  return train(lm(**fields), None)


@pytest.mark.parametrize('mesh', MESHES)
def test_every_mesh_trains_to_the_single_device_losses(mesh):
  expected, expected_state, _ = single()
  losses, state, strategy = train(lm(), mesh)
  assert dict(strategy.mesh.shape) == {'dcn_data': 1, 'data': mesh[0], 'fsdp': mesh[1],
                                       'tensor': mesh[2]}
  # Training really moved: the loss fell from ~ln(64) = 4.16.
  assert losses[0] > 4.0 and losses[-1] < losses[0] - 0.3, losses
  np.testing.assert_allclose(losses, expected, rtol=RTOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-5),
               jax.device_get(state.params), jax.device_get(expected_state.params))


@pytest.mark.parametrize('fields', [dict(scan_layers=True, remat='full'),
                                    dict(scan_layers=True, remat='dots'),
                                    dict(remat='full')])
def test_scan_and_remat_train_alike_under_fsdp_and_tensor(fields):
  # remat computes the same function; scan too, from other initial values (a key per layer).
  expected, _, _ = single(scan_layers=fields.get('scan_layers', False))
  losses, state, strategy = train(lm(**fields), (2, 2, 2), steps=5)
  np.testing.assert_allclose(losses, expected[:5], rtol=RTOL)
  if fields.get('scan_layers'):
    # The stacked layer axis stays whole (rules: layers -> None); heads split over tensor.
    kernel = state.params['blocks']['attention']['query']['kernel']  # (L, d, H, D)
    assert kernel.sharding.spec == P(None, 'fsdp', 'tensor', None)
    assert kernel.addressable_shards[0].data.shape == (2, 16, 4, 4)


def test_params_and_their_optimizer_state_are_sharded_as_the_rules_say():
  _, state, _ = train(lm(), (2, 2, 2), steps=1)
  block = state.params['block_0']
  momentum = state.opt_state[0].trace['block_0']
  expected = {
      ('mlp_in', 'kernel'): (P('fsdp', 'tensor'), (16, 64)),      # (32, 128): columns
      ('mlp_out', 'kernel'): (P('tensor', 'fsdp'), (64, 16)),     # (128, 32): rows
      ('mlp_in', 'bias'): (P('tensor'), (64,)),
      ('attention', 'query', 'kernel'): (P('fsdp', 'tensor', None), (16, 4, 4)),  # by heads
      ('attention', 'out', 'kernel'): (P('tensor', None, 'fsdp'), (4, 4, 16)),
      ('attention_norm', 'scale'): (P('fsdp'), (16,)),
  }
  for path, (spec, shard_shape) in expected.items():
    for tree in (block, momentum):
      leaf = functools.reduce(lambda t, k: t[k], path, tree)
      assert leaf.sharding.spec == spec, path
      assert {s.data.shape for s in leaf.addressable_shards} == {shard_shape}, path
  # The token embedding (64, 32): vocab on tensor, embed on fsdp.
  assert state.params['token_embed']['embedding'].sharding.spec == P('tensor', 'fsdp')


def test_the_param_tree_is_the_one_without_names():
  """Names are metadata only: init returns plain arrays, the same as flax's own layers give."""
  params = lm().init(jax.random.key(0), jnp.zeros((1, LENGTH), jnp.int32))['params']
  leaves = jax.tree.leaves(params)
  assert all(isinstance(leaf, jax.Array) for leaf in leaves)
  axes = rules.param_axes(lm(), jnp.zeros((1, LENGTH), jnp.int32))
  flat = {tuple(str(k.key) for k in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
  assert flat.keys() == axes.keys()
  assert all(len(axes[path]) == leaf.ndim for path, leaf in flat.items())
  assert axes[('block_0', 'mlp_in', 'kernel')] == ('embed', 'mlp')
  scanned = lm(scan_layers=True).init(jax.random.key(0), jnp.zeros((1, LENGTH), jnp.int32))
  assert (jax.tree.map(jnp.shape, scanned['params'])
          == jax.tree.map(jnp.shape, stack_layers(params)))
  assert rules.param_axes(lm(scan_layers=True), jnp.zeros((1, LENGTH), jnp.int32))[
      ('blocks', 'mlp_in', 'kernel')] == ('layers', 'embed', 'mlp')


def test_an_indivisible_axis_stays_whole():
  # A 65-token vocabulary over tensor=2: the rows cannot split evenly, so they replicate.
  spec = rules.mesh_spec(('vocab', 'embed'), (65, 32),
                         {'dcn_data': 1, 'data': 2, 'fsdp': 2, 'tensor': 2}, rules.rules())
  assert spec == P(None, 'fsdp')


def test_a_checkpoint_saved_under_one_mesh_resumes_under_another(tmp_path):
  expected, _, _ = single()
  first, state, _ = train(lm(), (1, 1, 8), steps=10)
  checkpointer = Checkpointer(str(tmp_path), keep=1)
  checkpointer.save(10, state)
  checkpointer.close()
  strategy = strategy_for(lm(), (2, 2, 2))
  abstract = strategy.abstract_state(
      lambda: create_train_state(lm(), optax.sgd(0.5, momentum=0.9),
                                 jnp.zeros((1, LENGTH), jnp.int32), seed=0))
  checkpointer = Checkpointer(str(tmp_path), keep=1)
  step, restored, _ = checkpointer.restore_latest(abstract)
  checkpointer.close()
  assert step == 10
  assert restored.params['block_0']['mlp_in']['kernel'].sharding.spec == P('fsdp', 'tensor')
  second, _, _ = train(lm(), (2, 2, 2), steps=10, state=restored, skip=10)
  np.testing.assert_allclose(np.concatenate([first, second]), expected, rtol=RTOL)


@pytest.mark.parametrize('scan_layers', [False, True])
def test_generation_with_the_kv_cache_under_tensor_parallelism(scan_layers):
  model = lm(scan_layers=scan_layers)
  _, state, strategy = train(model, (1, 2, 4), steps=3)
  prompt = np.random.default_rng(1).integers(0, VOCAB, (2, 4)).astype(np.int32)
  one_device = generate(model, jax.device_get(state.params), prompt, max_new_tokens=10,
                        rng=jax.random.key(0), temperature=0)
  assert state.params[('blocks' if scan_layers else 'block_0')]['mlp_in']['kernel'
                                                                        ].sharding.spec[-1] == 'tensor'
  with jax.set_mesh(strategy.mesh), nn.logical_axis_rules(strategy.rules):
    sharded = generate(model, state.params, prompt, max_new_tokens=10, rng=jax.random.key(0),
                       temperature=0)
  np.testing.assert_array_equal(sharded, one_device)
