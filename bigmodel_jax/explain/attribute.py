"""Explain a trained run's outputs on some inputs, with the methods its input kind allows.

images  -> gradient methods on the pixels (baseline for integrated gradients: a black image);
tokens  -> gradient methods on the token embeddings, one score per token (see text.py);
features -> Shapley values (shapley.py) and LIME-style surrogates (surrogate.py), both as
            contributions against the mean training row, so the two can be read side by side.
For a classifier the output explained is the logit of the predicted class; for a regressor, the
prediction.
"""

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bigmodel_jax import data
from bigmodel_jax.explain import methods as methods_lib
from bigmodel_jax.explain import shapley
from bigmodel_jax.explain import surrogate
from bigmodel_jax.explain import text
from bigmodel_jax.infer import predict
from bigmodel_jax.run import trained as trained_lib

# Training rows that stand for "a typical input" of tabular explanations (evenly spread).
BACKGROUND_ROWS = 100
_PREDICT_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class Attributions:
  """What `attribute` found for N inputs.

  outputs: (N, K) the model's outputs; targets: (N,) the output index explained.
  values: method -> attributions, shaped like the inputs ((N, T) per token for text).
  base: features only: method -> (N,) the output that the row's values add up from.
  """
  outputs: np.ndarray
  targets: np.ndarray
  values: dict[str, np.ndarray]
  base: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _gradient_values(params, inputs, targets, rng, *, model, method: str, kind: str):
  if kind == 'tokens':
    return text.token_attributions(model, params, inputs, targets, method, rng)

  def score_fn(x):
    return methods_lib.target_scores(model.apply({'params': params}, x, train=False), targets)

  return methods_lib.gradient_attribution(method, score_fn, inputs, jnp.zeros_like(inputs), rng)


def background_rows(trained: trained_lib.Trained) -> np.ndarray:
  """BACKGROUND_ROWS training inputs spread evenly over the train split."""
  (batch,) = data.eval_batches(trained_lib.load_dataset(trained.config).train,
                               batch_size=BACKGROUND_ROWS, max_batches=1)
  return batch['inputs'][batch['weights'] > 0]


def attribute(trained: trained_lib.Trained, inputs: np.ndarray, methods: Sequence[str], *,
              seed: int = 0, background: np.ndarray | None = None) -> Attributions:
  """Attributions of `trained`'s outputs at `inputs` (N, ...) by each of `methods`.

  `methods` must suit the run's input kind (`methods.check_methods`); `background` (features
  only, default `background_rows`) are the rows a feature takes when it is "absent".
  """
  model, params, kind = trained.model, trained.params, trained.spec.input_kind
  apply = jax.jit(functools.partial(model.apply, {'params': params}, train=False))
  outputs = predict.run_in_batches(apply, inputs, _PREDICT_BATCH)
  is_regression = trained.spec.task == 'regression'
  targets = np.zeros(len(inputs), np.int32) if is_regression else outputs.argmax(-1)
  rng = jax.random.key(seed)
  if kind != 'features':
    values = {method: np.asarray(jax.jit(functools.partial(
        _gradient_values, model=model, method=method, kind=kind))(params, inputs, targets, rng))
              for method in methods}
    return Attributions(outputs, targets, values)

  background = background_rows(trained) if background is None else background
  predict_fn = functools.partial(predict.run_in_batches, apply, batch_size=_PREDICT_BATCH)
  values, base = {}, {}
  if 'shap' in methods:
    values['shap'], base['shap'] = shapley.shapley_values(predict_fn, inputs, background, targets)
  if 'lime' in methods:
    generator = np.random.default_rng(seed)
    centred = inputs - background.mean(axis=0)
    fits = [surrogate.local_surrogate(lambda rows, t=t: predict_fn(rows)[:, t], row, generator)
            for row, t in zip(inputs, targets)]
    slopes = np.stack([fit.slopes for fit in fits])
    values['lime'] = slopes * centred
    base['lime'] = np.array([fit.intercept for fit in fits]) - values['lime'].sum(axis=1)
  return Attributions(outputs, targets, values, base)
