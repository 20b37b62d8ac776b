"""Privacy accounting of DP-SGD with Google's dp-accounting (Renyi DP).

Each step is a Poisson-sampled Gaussian mechanism: every training example joins the batch with
probability q = batch_size / train size (see `sampling`), and the sum of clipped gradients gets
noise sigma * C, i.e. `PoissonSampledDpEvent(q, GaussianDpEvent(sigma))`; T steps compose it T
times. Neighbouring datasets differ by adding or removing one example (the relation under which
the Poisson analysis holds, and the usual one in DP-SGD papers). RDP rather than PLD: it is
cheap enough to run at every log step and for the searches below; PLD would give a slightly
smaller epsilon for the same noise (an RDP epsilon is a valid, slightly loose, upper bound).
"""

import dp_accounting
from dp_accounting import rdp


def dp_sgd_event(sampling_probability: float, noise_multiplier: float,
                 steps: int) -> dp_accounting.DpEvent:
  """`steps` Poisson-sampled Gaussian steps."""
  return dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(sampling_probability,
                                          dp_accounting.GaussianDpEvent(noise_multiplier)),
      steps)


def epsilon(sampling_probability: float, noise_multiplier: float, steps: int,
            delta: float) -> float:
  """The epsilon at `delta` after `steps` steps (0 for no step)."""
  if steps == 0:
    return 0.0
  accountant = rdp.RdpAccountant()
  accountant.compose(dp_sgd_event(sampling_probability, noise_multiplier, steps))
  return float(accountant.get_epsilon(delta))


def noise_for_epsilon(target_epsilon: float, delta: float, sampling_probability: float,
                      steps: int) -> float:
  """The smallest noise multiplier whose `steps` steps spend at most `target_epsilon` at `delta`.

  dp-accounting's calibration (a bracketed root search with the accountant), to 1e-4.
  """
  return float(dp_accounting.calibrate_dp_mechanism(
      rdp.RdpAccountant, lambda sigma: dp_sgd_event(sampling_probability, sigma, steps),
      target_epsilon, delta, dp_accounting.mechanism_calibration.LowerEndpointAndGuess(1e-2, 1.0),
      tol=1e-4))


class Accountant:
  """The budget of one run: epsilon after any number of its steps, and where a cap stops it.

  Renyi DP adds up over steps, so the RDP of one step is computed once (dp-accounting's
  accountant, count 1) and T steps are T times it, converted to epsilon by the same
  dp-accounting function the accountant uses: the same number as composing T steps, at the
  cost of a conversion (the hook calls this at every log step, the budget search ~log2(T) times).
  """

  def __init__(self, sampling_probability: float, noise_multiplier: float, delta: float):
    self.sampling_probability = sampling_probability
    self.noise_multiplier = noise_multiplier
    self.delta = delta
    one_step = rdp.RdpAccountant()
    one_step.compose(dp_sgd_event(sampling_probability, noise_multiplier, 1))
    self._orders, self._rdp = one_step.orders, one_step.rdp

  def epsilon(self, steps: int) -> float:
    """The epsilon at the run's delta after `steps` steps (0 for no step)."""
    if steps == 0:
      return 0.0
    return float(rdp.rdp_privacy_accountant.compute_epsilon(
        self._orders, steps * self._rdp, self.delta)[0])

  def steps_within(self, max_epsilon: float, num_steps: int) -> int:
    """The most steps (<= num_steps) whose epsilon is <= max_epsilon (binary search: epsilon
    grows with the steps)."""
    if self.epsilon(num_steps) <= max_epsilon:
      return num_steps
    low, high = 0, num_steps  # epsilon(low) <= max_epsilon < epsilon(high)
    while high - low > 1:
      middle = (low + high) // 2
      low, high = (middle, high) if self.epsilon(middle) <= max_epsilon else (low, middle)
    return low
