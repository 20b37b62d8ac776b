"""The loop's privacy hook: epsilon as training goes, and the message when the budget ends it."""

import dataclasses

from absl import logging

from bigmodel_jax.train.privacy.budget import DpPlan
from bigmodel_jax.train.hooks import LoopState, Periodic
from bigmodel_jax.train.writers import MetricWriter


@dataclasses.dataclass
class ReportPrivacy(Periodic):
  """Writes the epsilon spent so far (metrics.jsonl and TensorBoard, split 'privacy')."""
  plan: DpPlan = None
  writer: MetricWriter = None
  requested_steps: int = 0  # config.num_steps, which the budget may cut short

  def __call__(self, loop: LoopState) -> None:
    report = self.plan.report(loop.step)
    self.writer.write(loop.step, 'privacy', report)
    logging.info('Privacy after step %d: epsilon=%.4g at delta=%g', loop.step, report['epsilon'],
                 report['delta'])
    if loop.is_last and loop.num_steps < self.requested_steps:
      logging.warning(
          'Privacy budget reached: stopped after step %d of %d, at epsilon=%.4g; step %d would '
          'spend epsilon=%.4g > config.dp.max_epsilon=%g. The last checkpoint is step %d.',
          loop.step, self.requested_steps, report['epsilon'], loop.step + 1,
          self.plan.accountant.epsilon(loop.step + 1), self.plan.max_epsilon, loop.step)
