"""The reported epsilon is dp-accounting's, and the budget searches land where they should."""

import dp_accounting
import pytest
from dp_accounting import rdp

from bigmodel_jax.train.privacy import accounting


def _direct(q, sigma, steps, delta):
  accountant = rdp.RdpAccountant()
  accountant.compose(dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps))
  return accountant.get_epsilon(delta)


@pytest.mark.parametrize('q,sigma,steps', [(64 / 1258, 1.0, 1000), (0.01, 0.8, 37), (0.2, 3.0, 1)])
def test_reported_epsilon_equals_dp_accounting_called_directly(q, sigma, steps):
  reported = accounting.Accountant(q, sigma, 1e-5).epsilon(steps)
  assert reported == pytest.approx(_direct(q, sigma, steps, 1e-5), rel=1e-12)
  assert accounting.epsilon(q, sigma, steps, 1e-5) == pytest.approx(reported, rel=1e-12)
  assert reported > 0.01


def test_target_epsilon_solves_the_noise_multiplier():
  sigma = accounting.noise_for_epsilon(3.0, 1e-5, 0.05, 500)
  assert 0.5 < sigma < 5
  assert _direct(0.05, sigma, 500, 1e-5) == pytest.approx(3.0, rel=1e-3)
  assert _direct(0.05, sigma * 0.98, 500, 1e-5) > 3.0  # the smallest such noise


def test_budget_allows_the_steps_up_to_max_epsilon():
  accountant = accounting.Accountant(0.05, 1.0, 1e-5)
  steps = accountant.steps_within(2.0, 1000)
  assert 0 < steps < 1000
  assert accountant.epsilon(steps) <= 2.0 < accountant.epsilon(steps + 1)
  assert accountant.steps_within(1e6, 1000) == 1000
