"""Initialising a new run's parameters from another run's checkpoint (`config.init`).

Distinct from resuming: a run resumes its own checkpoint (train state, optimizer, data position)
and otherwise, where `config.init.workdir` names another run, starts from that run's parameters
with a fresh optimizer at step 0; otherwise from the seed (see train/loop.py).

Which leaves are copied: those whose '/'-joined path (e.g. 'block_0/attention/query/kernel')
matches one of `config.init.include` (all when empty), none of `config.init.exclude`, exists in
the source and has the same shape there. The others (a new classifier head, say) keep their
fresh initialisation from the seed and are listed in the log. Regexes are matched with
`re.search`: 'head' matches 'head/kernel'; anchor with ^ and $ for an exact path.

Two differences between the runs are bridged rather than refused or left fresh:
- Transformer layers scanned in one run (`model.scan_layers`, one `blocks` subtree stacked on a
  layer axis) and separate in the other (`block_0` ... `block_{L-1}`): the source's parameters
  are converted to this run's layout (`stack_layers` / `unstack_layers`), so the new run starts
  from the same function.
- Char vocabularies learned from different texts (the same character has another id): the rows
  of the token embedding are matched by character; a character the source lacks keeps its fresh
  row. (Other tokenizers that differ are only warned about: their ids cannot be matched.)

Everything is decided from shapes (`plan`), before the workdir is touched; only `load` reads
arrays, each straight onto the sharding of the leaf it replaces, so any strategy (FSDP
included) gets its own layout. Where the source's arrays must first be converted, they are read
replicated over the same devices, converted in one jitted call and placed on those shardings.
"""

import dataclasses
import os
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util
from jax.sharding import NamedSharding, PartitionSpec

from bigmodel_jax import models
from bigmodel_jax.config import Config, InitConfig
from bigmodel_jax.data import CharTokenizer, DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.run import checkpoint
from bigmodel_jax.run import trained

_FIELD = 'config.init.workdir'
# The parameter whose rows are the tokenizer's ids (the transformers' token embedding).
TOKEN_EMBEDDING = 'token_embed/embedding'


def parse_source(value: str) -> tuple[str, int | None]:
  """'WORKDIR' -> (WORKDIR, None: its newest intact step); 'WORKDIR:STEP' -> (WORKDIR, STEP)."""
  workdir, colon, step = value.rpartition(':')
  if colon and step.isdigit():
    return workdir, int(step)
  return value, None


def check_patterns(init: InitConfig, field: str) -> tuple[re.Pattern, ...]:
  """The compiled regexes of `config.init.<field>`; UserInputError if one fails."""
  values = getattr(init, field)
  field = f'init.{field}'
  compiled = []
  for value in values:
    try:
      compiled.append(re.compile(value))
    except re.error as e:
      raise UserInputError(f'config.{field}: {value!r} is not a regex ({e})') from None
  return tuple(compiled)


def flat_paths(tree: Any) -> dict[str, Any]:
  """{'a/b/c': leaf} of a nested params dict."""
  return traverse_util.flatten_dict(tree, sep='/')


def unmatched(patterns: tuple[re.Pattern, ...], paths: list[str]) -> list[str]:
  """The patterns that match none of `paths` (a typo would otherwise silently do nothing)."""
  return [p.pattern for p in patterns if not any(p.search(path) for path in paths)]


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `load` will copy: from which checkpoint, which paths, and which stay fresh (and why).

  `source` (the source's abstract params) is set where the arrays need converting first: the
  layers' layout differs (`source_scanned`: the source's, None where the layouts agree), or
  `token_rows` maps each row of this run's token embedding to the source's row of the same
  character (-1: none).
  """
  checkpoint_dir: str
  step: int
  copied: tuple[str, ...]
  fresh: dict[str, str]  # path -> why it keeps its fresh initialisation
  source: Any = None
  source_scanned: bool | None = None
  token_rows: tuple[int, ...] | None = None


def plan(config: Config, model: nn.Module, spec: DataSpec) -> Plan:
  """Checks `config.init` against the source run and `model`'s parameter shapes.

  Raises:
    UserInputError: the source is not a run, has no intact checkpoint (at the step asked for),
      a regex matches no parameter, or the shapes leave nothing to copy.
  """
  workdir, step = parse_source(config.init.workdir)
  value = config.init.workdir
  if not epath.Path(workdir).is_dir():
    raise UserInputError(f'{_FIELD}={value!r}: no such directory')
  try:
    source = trained.load_run(workdir)
  except UserInputError:
    raise UserInputError(f'{_FIELD}={value!r}: holds no training run; train one first') from None
  steps = checkpoint.saved_steps(source.checkpoint_dir)
  if step is None:
    step = checkpoint.newest_intact_step(source.checkpoint_dir, steps,
                                         lambda bad, why: logging.warning(
                                             'init: skipping corrupt step %d: %s', bad, why))
    if step is None:
      raise UserInputError(f'{_FIELD}={value!r}: has no checkpoint; train it first')
  elif step not in steps or checkpoint.verify_manifest(
      os.path.join(source.checkpoint_dir, str(step))) is not None:
    raise UserInputError(f'{_FIELD}={value!r}: has no intact checkpoint of step {step}; '
                         f'saved steps: {steps}')
  token_rows = _token_rows(source.spec.tokenizer, spec.tokenizer)
  if source.spec.tokenizer != spec.tokenizer and token_rows is None:
    logging.warning('init: the source run tokenizes differently (%s, this run %s): copied token '
                    'embeddings will map ids to other text',
                    _describe(source.spec.tokenizer), _describe(spec.tokenizer))

  source_model = models.build_model(source.config.model, source.spec)
  source_params = trained.abstract_params(source_model, source.spec)
  target_params = trained.abstract_params(model, spec)
  source_scanned, target_scanned = _scanned(source_params), _scanned(target_params)
  if None in (source_scanned, target_scanned) or source_scanned == target_scanned:
    source_scanned = None  # nothing to convert
  converted = source_params
  if source_scanned is not None:
    converted = jax.eval_shape(_to_layout_of_target(source_scanned), source_params)
  source_shapes = flat_paths(converted)
  target_shapes = flat_paths(target_params)
  include = check_patterns(config.init, 'include')
  exclude = check_patterns(config.init, 'exclude')
  paths = sorted(target_shapes)
  bad = unmatched(include + exclude, paths)
  if bad:
    raise UserInputError(f'config.init.include/exclude: {", ".join(map(repr, bad))} matches no '
                         f'parameter of this model; its paths look like {paths[0]!r}')
  copied, fresh = [], {}
  for path in paths:
    if include and not any(p.search(path) for p in include):
      fresh[path] = 'not included'
    elif any(p.search(path) for p in exclude):
      fresh[path] = 'excluded'
    elif path not in source_shapes:
      fresh[path] = 'not in the source'
    elif (path == TOKEN_EMBEDDING and token_rows is not None
          and source_shapes[path].shape[1:] == target_shapes[path].shape[1:]):
      copied.append(path)  # row by row, by character
    elif source_shapes[path].shape != target_shapes[path].shape:
      fresh[path] = f'shape {target_shapes[path].shape} != source {source_shapes[path].shape}'
    else:
      copied.append(path)
  if not copied:
    raise UserInputError(f'{_FIELD}={value!r}: no parameter of this model can be copied from it '
                         f'(paths and shapes differ: e.g. {paths[0]} {fresh[paths[0]]})')
  if TOKEN_EMBEDDING not in copied:
    token_rows = None
  elif token_rows is not None:
    missing = [char for char, row in zip(spec.tokenizer.vocab, token_rows[1:]) if row < 0]
    logging.info('init: %s rows matched by character; %d character(s) the source lacks keep '
                 'fresh rows: %r', TOKEN_EMBEDDING, len(missing), ''.join(missing))
  needs_converting = source_scanned is not None or token_rows is not None
  return Plan(source.checkpoint_dir, step, tuple(copied), fresh,
              source=source_params if needs_converting else None,
              source_scanned=source_scanned, token_rows=token_rows)


def _token_rows(source, target) -> tuple[int, ...] | None:
  """For two char vocabularies that differ: the source's row of each of the target's ids."""
  if not (isinstance(source, CharTokenizer) and isinstance(target, CharTokenizer)
          and source != target):
    return None
  where = {char: i + 1 for i, char in enumerate(source.vocab)}
  # Id 0 (padding) is the same in both.
  return (0, *(where.get(char, -1) for char in target.vocab))


def _scanned(params: Any) -> bool | None:
  """Whether a model's transformer layers are scanned; None where it has none."""
  if models.is_scanned(params):
    return True
  return False if 'block_0' in params else None


def _to_layout_of_target(source_scanned: bool):
  """The conversion of a params tree from the source's layers layout to the other one."""
  return models.unstack_layers if source_scanned else models.stack_layers


def _describe(tokenizer) -> str:
  return 'none' if tokenizer is None else f"{tokenizer.to_dict()['type']}, {tokenizer.vocab_size} ids"


def load(init_plan: Plan, params: Any) -> Any:
  """`params` (freshly initialised, placed) with the planned leaves read from the source.

  Each copied leaf is read with its replacement's dtype and sharding, so nothing is gathered
  whole on one device (except where the source's arrays need converting: see the module doc).
  """
  flat = flat_paths(params)
  if init_plan.source is None:
    target = traverse_util.unflatten_dict(
        {path: jax.ShapeDtypeStruct(flat[path].shape, flat[path].dtype,
                                    sharding=flat[path].sharding)
         for path in init_plan.copied}, sep='/')
    source = flat_paths(checkpoint.params_at_step(init_plan.checkpoint_dir, target,
                                                  init_plan.step))
  else:
    source = _converted(init_plan, flat)
  logging.info('init: copied %d parameter arrays from %s step %d', len(init_plan.copied),
               init_plan.checkpoint_dir, init_plan.step)
  for path, why in init_plan.fresh.items():
    logging.info('init: %s keeps its fresh initialisation (%s)', path, why)
  return traverse_util.unflatten_dict({**flat, **source}, sep='/')


def _converted(init_plan: Plan, flat: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The copied leaves, read in the source's layout and vocabulary and converted to this run's."""
  mesh = flat[init_plan.copied[0]].sharding.mesh
  replicated = NamedSharding(mesh, PartitionSpec())
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                          init_plan.source)
  source = checkpoint.params_at_step(init_plan.checkpoint_dir, abstract, init_plan.step)
  embedding = flat.get(TOKEN_EMBEDDING)

  def convert(source, embedding):
    if init_plan.source_scanned is not None:
      source = _to_layout_of_target(init_plan.source_scanned)(source)
    leaves = flat_paths(source)
    out = {path: leaves[path].astype(flat[path].dtype) for path in init_plan.copied}
    if init_plan.token_rows is not None:
      rows = np.asarray(init_plan.token_rows)
      out[TOKEN_EMBEDDING] = jnp.where((rows >= 0)[:, None],
                                       out[TOKEN_EMBEDDING][np.maximum(rows, 0)], embedding)
    return out

  shardings = {path: flat[path].sharding for path in init_plan.copied}
  return jax.jit(convert, out_shardings=shardings)(source, embedding)
