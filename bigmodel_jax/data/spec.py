"""`DataSpec`: what a dataset tells the rest of the program, typed, and its JSON form.

Every loader returns one; models are sized from it, tasks and predictors read it, and the
workdir keeps it as `dataset.json` so inference needs no data. Nobody guesses the input kind
from which fields happen to be set: `input_kind` says it.
"""

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

from bigmodel_jax.data import tokenizers

TASKS = ('classification', 'regression', 'language_modeling', 'multitask')
INPUT_KINDS = ('image', 'tokens', 'features')
SPLITS = ('train', 'validation', 'test')

# Version 1 was the untyped metadata dict written before the spec existed (no 'version' key).
VERSION = 2


class SpecError(ValueError):
  """A serialised spec that cannot be read; the message says what is wrong."""


@dataclasses.dataclass(frozen=True)
class Normalization:
  """How tabular features were cleaned and z-scored, from training rows only."""
  fill: tuple[float, ...]   # replaces NaN/inf: the training column mean
  mean: tuple[float, ...]
  std: tuple[float, ...]

  def apply(self, rows: np.ndarray) -> np.ndarray:
    """Cleans and z-scores rows (..., F) exactly as the training rows were; float32 out."""
    rows = np.asarray(rows, dtype=np.float64)
    rows = np.where(np.isfinite(rows), rows, np.asarray(self.fill))
    return ((rows - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TaskEntry:
  """One task of a multi-task run (`config.tasks.<name>`): its dataset's spec and how it trains.

  `head` names the model's output for it (models.transformer.HEADS) and `weight` its share of the
  loss; they are kept with the data so that every reader of the run builds the same model and
  task from dataset.json alone.
  """
  name: str
  spec: 'DataSpec'
  head: str
  weight: float

  def to_json(self) -> dict[str, Any]:
    return {'name': self.name, 'head': self.head, 'weight': self.weight,
            'spec': self.spec.to_json()}

  @classmethod
  def from_json(cls, value: dict[str, Any]) -> 'TaskEntry':
    return cls(name=value['name'], spec=DataSpec.from_json(value['spec']), head=value['head'],
               weight=float(value['weight']))


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """The typed contract between a dataset and the model, task, predictor and exporter.

  Attributes:
    name: the dataset (`config.data.name`).
    task: one of TASKS; 'multitask' when the run trains several `tasks` at once.
    input_kind: one of INPUT_KINDS: 'image' (H, W, C) float32 in [0, 1], 'tokens' (T,) int32
      ids of `tokenizer`, 'features' (F,) float32 z-scored with `normalization`.
    input_shape: one example's input shape.
    num_outputs: classes (classification), vocabulary size (language modelling) or target
      values per example (regression); for multitask, the outputs of all tasks together.
    class_names: one per class (classification only).
    tokenizer: text inputs only.
    seq_len: tokens per example (text inputs only).
    feature_names, target, normalization: tabular inputs only.
    split_sizes: examples per split ('train', 'validation', 'test').
    tasks: multitask only: each task's entry, in the config's order. Every task reads the same
      tokens (the shared `tokenizer` and `seq_len` of this spec); an example of a multi-task
      batch is one row of each task.
  """
  name: str
  task: str
  input_kind: str
  input_shape: tuple[int, ...]
  num_outputs: int
  class_names: tuple[str, ...] = ()
  tokenizer: tokenizers.Tokenizer | None = None
  seq_len: int | None = None
  feature_names: tuple[str, ...] = ()
  target: str | None = None
  normalization: Normalization | None = None
  split_sizes: Mapping[str, int] = dataclasses.field(default_factory=dict, hash=False)
  tasks: tuple[TaskEntry, ...] = ()

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f'task={self.task!r} is not one of {TASKS}')
    object.__setattr__(self, 'tasks', tuple(self.tasks))
    if (self.task == 'multitask') != bool(self.tasks):
      raise ValueError('tasks go with the multitask task, and only with it')
    for entry in self.tasks:
      if (entry.spec.tokenizer, entry.spec.seq_len) != (self.tokenizer, self.seq_len):
        raise ValueError(f'task {entry.name!r} reads other tokens than the multi-task spec')
    if self.input_kind not in INPUT_KINDS:
      raise ValueError(f'input_kind={self.input_kind!r} is not one of {INPUT_KINDS}')
    if (self.input_kind == 'tokens') != (self.tokenizer is not None):
      raise ValueError('a tokenizer goes with token inputs, and only with them')
    if (self.input_kind == 'features') != (self.normalization is not None):
      raise ValueError('a normalization goes with feature inputs, and only with them')
    object.__setattr__(self, 'input_shape', tuple(int(d) for d in self.input_shape))
    object.__setattr__(self, 'class_names', tuple(self.class_names))
    object.__setattr__(self, 'feature_names', tuple(self.feature_names))

  @property
  def input_dtype(self) -> np.dtype:
    return np.dtype(np.int32 if self.input_kind == 'tokens' else np.float32)

  @property
  def is_text(self) -> bool:
    return self.input_kind == 'tokens'

  def example_inputs(self, batch_size: int = 1) -> np.ndarray | dict[str, np.ndarray]:
    """Zero inputs of the spec's shape and dtype, for `init` and shape inference (multitask:
    {task name: its inputs})."""
    if self.tasks:
      return {entry.name: entry.spec.example_inputs(batch_size) for entry in self.tasks}
    return np.zeros((batch_size, *self.input_shape), self.input_dtype)

  def with_split_sizes(self, **sizes: int) -> 'DataSpec':
    return dataclasses.replace(self, split_sizes={k: int(sizes[k]) for k in SPLITS if k in sizes})

  def to_json(self) -> dict[str, Any]:
    """The versioned JSON form (`dataset.json`); `from_json` inverts it."""
    return {
        'version': VERSION, 'name': self.name, 'task': self.task,
        'input_kind': self.input_kind, 'input_shape': list(self.input_shape),
        'input_dtype': self.input_dtype.name, 'num_outputs': self.num_outputs,
        'class_names': list(self.class_names),
        'tokenizer': self.tokenizer.to_dict() if self.tokenizer else None,
        'seq_len': self.seq_len, 'feature_names': list(self.feature_names),
        'target': self.target,
        'normalization': ({k: list(v) for k, v in dataclasses.asdict(self.normalization).items()}
                          if self.normalization else None),
        'split_sizes': dict(self.split_sizes),
        'tasks': [entry.to_json() for entry in self.tasks],
    }

  @classmethod
  def from_json(cls, value: Any) -> 'DataSpec':
    """Reads `to_json`'s form, or the version-1 metadata dict; SpecError if neither."""
    if not isinstance(value, dict):
      raise SpecError(f'expected a JSON object, got {type(value).__name__}')
    version = value.get('version', 1)
    try:
      if version == 1:
        return _from_version_1(value)
      if version != VERSION:
        raise SpecError(f'version {version!r} is not one this program reads (1 or {VERSION})')
      norm = value['normalization']
      return cls(
          name=value['name'], task=value['task'], input_kind=value['input_kind'],
          input_shape=value['input_shape'], num_outputs=int(value['num_outputs']),
          class_names=value['class_names'],
          tokenizer=(tokenizers.tokenizer_from_dict(value['tokenizer'])
                     if value['tokenizer'] else None),
          seq_len=value['seq_len'], feature_names=value['feature_names'],
          target=value['target'],
          normalization=Normalization(**{k: tuple(v) for k, v in norm.items()}) if norm else None,
          split_sizes=value['split_sizes'],
          # Absent from the files of runs older than multi-task training.
          tasks=[TaskEntry.from_json(entry) for entry in value.get('tasks', [])])
    except SpecError:
      raise
    except (KeyError, TypeError, ValueError) as e:
      raise SpecError(f'not a valid dataset spec ({type(e).__name__}: {e})') from None


def _from_version_1(old: dict[str, Any]) -> DataSpec:
  """The untyped old of runs trained before DataSpec existed."""
  task = old['task']
  if 'tokenizer' in old:
    kind = 'tokens'
  elif 'normalization' in old:
    kind = 'features'
  else:
    kind = 'image'
  norm = old.get('normalization')
  tokenizer = (tokenizers.tokenizer_from_dict(old['tokenizer'])
               if kind == 'tokens' else None)
  if task == 'classification':
    num_outputs = old['num_classes']
  elif task == 'language_modeling':
    num_outputs = tokenizer.vocab_size
  else:
    num_outputs = old['num_outputs']
  return DataSpec(
      name=old['dataset'], task=task, input_kind=kind, input_shape=old['input_shape'],
      num_outputs=int(num_outputs), class_names=old.get('class_names', ()),
      tokenizer=tokenizer, seq_len=old.get('seq_len'),
      feature_names=old.get('feature_names', ()), target=old.get('target'),
      normalization=Normalization(**{k: tuple(v) for k, v in norm.items()}) if norm else None)


def image_spec(name: str, *, input_shape: Sequence[int], class_names: Sequence[str],
               **sizes: int) -> DataSpec:
  return DataSpec(name=name, task='classification', input_kind='image', input_shape=input_shape,
                  num_outputs=len(class_names), class_names=class_names, split_sizes=sizes)


def text_spec(name: str, task: str, *, tokenizer: tokenizers.Tokenizer, seq_len: int,
              class_names: Sequence[str] = (), **sizes: int) -> DataSpec:
  """A language-model spec (outputs = vocabulary) or a text classifier's (outputs = classes)."""
  num_outputs = len(class_names) if task == 'classification' else tokenizer.vocab_size
  return DataSpec(name=name, task=task, input_kind='tokens', input_shape=(seq_len,),
                  num_outputs=num_outputs, class_names=class_names, tokenizer=tokenizer,
                  seq_len=seq_len, split_sizes=sizes)


def multitask_spec(tasks: Sequence[TaskEntry]) -> DataSpec:
  """The spec of a multi-task run over `tasks`, whose specs share their tokenizer and seq_len."""
  first = tasks[0].spec
  return DataSpec(name='multitask', task='multitask', input_kind='tokens',
                  input_shape=first.input_shape,
                  num_outputs=sum(entry.spec.num_outputs for entry in tasks),
                  tokenizer=first.tokenizer, seq_len=first.seq_len,
                  split_sizes={split: sum(entry.spec.split_sizes.get(split, 0) for entry in tasks)
                               for split in SPLITS},
                  tasks=tasks)
