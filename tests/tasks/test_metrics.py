import math

import numpy as np
from sklearn import metrics as skm

from bigmodel_jax.tasks import metrics


def test_classification_metrics_equal_scikit_learn():
  rng = np.random.default_rng(0)
  y_true = rng.integers(0, 4, 200)
  y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 4, 200))
  confusion = skm.confusion_matrix(y_true, y_pred, labels=range(4))
  got = metrics.classification_metrics(confusion)
  assert math.isclose(got['accuracy'], skm.accuracy_score(y_true, y_pred))
  for name, fn in [('precision', skm.precision_score), ('recall', skm.recall_score),
                   ('f1', skm.f1_score)]:
    assert math.isclose(got[name], fn(y_true, y_pred, average='macro', zero_division=0)), name


def test_classification_metrics_skip_absent_classes():
  confusion = np.zeros((3, 3))
  confusion[0, 0] = 5
  confusion[1, 1] = 5  # class 2 neither occurs nor is predicted
  assert metrics.classification_metrics(confusion)['f1'] == 1.0


def test_language_model_metrics():
  got = metrics.language_model_metrics(loss_sum=2 * math.log(4) * 10, correct_sum=5, token_count=20)
  assert math.isclose(got['perplexity'], 4.0)
  assert math.isclose(got['bits_per_char'], 2.0)
  assert got['accuracy'] == 0.25


def test_regression_metrics_equal_scikit_learn():
  rng = np.random.default_rng(1)
  y = rng.normal(size=(50, 2))
  pred = y + rng.normal(scale=0.3, size=y.shape)
  err = pred - y
  got = metrics.regression_metrics((err ** 2).sum(0), np.abs(err).sum(0), y.sum(0), (y ** 2).sum(0), 50)
  assert math.isclose(got['mse'], skm.mean_squared_error(y, pred), rel_tol=1e-9)
  assert math.isclose(got['mae'], skm.mean_absolute_error(y, pred), rel_tol=1e-9)
  assert math.isclose(got['r2'], skm.r2_score(y, pred), rel_tol=1e-9)
