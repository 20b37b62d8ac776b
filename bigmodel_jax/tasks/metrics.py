"""Evaluation metrics from summed statistics.

Evaluation runs batch by batch on device and only *sums* statistics (a confusion matrix, sums of
errors); the host adds the sums over batches and turns them into metrics once, here. Sums are exact
under padding (padded rows carry weight 0) and under any split of the data into batches or devices.
"""

import math

import numpy as np


def classification_metrics(confusion: np.ndarray) -> dict[str, float]:
  """Accuracy and macro precision/recall/F1 from a (true, predicted) confusion matrix.

  Classes that never occur and are never predicted are left out of the macro average; a class
  with no predictions has precision 0 (the scikit-learn convention with zero_division=0).
  """
  confusion = np.asarray(confusion, dtype=np.float64)
  true_positives = np.diag(confusion)
  actual = confusion.sum(axis=1)
  predicted = confusion.sum(axis=0)
  present = (actual + predicted) > 0
  precision = np.divide(true_positives, predicted, out=np.zeros_like(true_positives), where=predicted > 0)
  recall = np.divide(true_positives, actual, out=np.zeros_like(true_positives), where=actual > 0)
  denominator = precision + recall
  f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positives),
                 where=denominator > 0)
  total = confusion.sum()
  return {
      'accuracy': float(true_positives.sum() / total) if total else float('nan'),
      'precision': float(precision[present].mean()) if present.any() else float('nan'),
      'recall': float(recall[present].mean()) if present.any() else float('nan'),
      'f1': float(f1[present].mean()) if present.any() else float('nan'),
  }


def language_model_metrics(loss_sum: float, correct_sum: float, token_count: float) -> dict[str, float]:
  """Per-token loss (nats), perplexity, bits per character (token) and next-token accuracy."""
  loss = loss_sum / token_count
  return {
      'loss': loss,
      'perplexity': math.exp(min(loss, 700.0)),
      'bits_per_char': loss / math.log(2),
      'accuracy': correct_sum / token_count,
  }


def regression_metrics(sum_squared_error: np.ndarray, sum_absolute_error: np.ndarray,
                       sum_targets: np.ndarray, sum_squared_targets: np.ndarray,
                       count: float) -> dict[str, float]:
  """MSE, MAE and R^2 from per-output sums; R^2 is averaged over outputs (uniform average)."""
  sse = np.asarray(sum_squared_error, np.float64)
  total_variation = np.asarray(sum_squared_targets, np.float64) - np.square(sum_targets) / count
  r2 = 1.0 - sse / np.where(total_variation > 0, total_variation, np.nan)
  return {
      'mse': float(sse.sum() / (count * sse.size)),
      'mae': float(np.asarray(sum_absolute_error, np.float64).sum() / (count * sse.size)),
      'r2': float(np.nanmean(r2)) if np.isfinite(r2).any() else float('nan'),
  }
