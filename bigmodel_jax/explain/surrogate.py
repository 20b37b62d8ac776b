"""LIME-style local linear surrogates (Ribeiro et al., 2016) of a tabular model.

Around one row x, the model is probed at Gaussian perturbations of x and a ridge regression is
fit to its outputs, each probe weighted by an exponential kernel of its distance to x (LIME's
kernel and width, 0.75 sqrt(F)). The surrogate's slopes say how the output moves near x.

Written here as a weighted sklearn `Ridge` rather than with the `lime` package: that package
has had no release since 2020, pulls in scikit-image for its image explainer, and by default
discretises tabular features into quartiles, so its weights are not slopes and cannot be
compared with Shapley values; the method itself is this one weighted fit. Features of this
project are z-scored, so a perturbation of scale 1 is one training standard deviation.
"""

import dataclasses
from typing import Callable

import numpy as np
from sklearn.linear_model import Ridge


@dataclasses.dataclass(frozen=True)
class Surrogate:
  """output ~= intercept + slopes . (z - x) near the row x; fidelity is the weighted R^2."""
  slopes: np.ndarray
  intercept: float
  fidelity: float


def local_surrogate(predict_fn: Callable[[np.ndarray], np.ndarray], row: np.ndarray,
                    rng: np.random.Generator, *, num_samples: int = 2000, scale: float = 1.0,
                    alpha: float = 1.0) -> Surrogate:
  """Fits the weighted ridge surrogate of predict_fn (rows (M, F) -> outputs (M,)) around `row`."""
  features = row.shape[0]
  offsets = rng.normal(scale=scale, size=(num_samples, features))
  outputs = predict_fn(row + offsets)
  width = 0.75 * np.sqrt(features)
  weights = np.exp(-np.sum(np.square(offsets), axis=1) / width**2)
  ridge = Ridge(alpha=alpha).fit(offsets, outputs, sample_weight=weights)
  return Surrogate(ridge.coef_, float(ridge.intercept_),
                   float(ridge.score(offsets, outputs, sample_weight=weights)))
