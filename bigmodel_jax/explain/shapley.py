"""Shapley values of a tabular model's output, through the `shap` package.

A feature's Shapley value is its average marginal contribution to the output over all orders
in which the features could be revealed; features not yet revealed take values from background
rows (the training data), so the values sum to f(x) minus the mean output over the background.
With few features shap's exact explainer enumerates every coalition (2^F of them); above
`EXACT_MAX_FEATURES` its permutation explainer samples orders instead.
"""

from typing import Callable

import numpy as np
import shap

# 2^12 coalitions x the background rows is still a few seconds of model calls on a CPU.
EXACT_MAX_FEATURES = 12


def shapley_values(predict_fn: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray,
                   background: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The Shapley values (N, F) of output `targets[i]` of `predict_fn` at each row, and the base.

  predict_fn: rows (M, F) -> outputs (M, K). base (N,) is the mean output of the background
  rows, so base + the row's values = the output at the row.
  """
  # Every background row is used: the base is their exact mean (shap samples 100 by default).
  masker = shap.maskers.Independent(background, max_samples=len(background))
  algorithm = 'exact' if inputs.shape[1] <= EXACT_MAX_FEATURES else 'permutation'
  values = np.zeros(inputs.shape, np.float64)
  base = np.zeros(len(inputs), np.float64)
  # One scalar function per explained output: shap then computes only that output.
  for target in np.unique(targets):
    rows = targets == target
    explainer = shap.Explainer(lambda x, t=target: predict_fn(x)[:, t], masker,
                               algorithm=algorithm)
    explanation = explainer(inputs[rows], silent=True)
    values[rows], base[rows] = explanation.values, explanation.base_values
  return values, base
