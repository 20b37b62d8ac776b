"""A DP-SGD run's plan, fixed before training: noise, padded batch size and steps within budget.

Built by the trainer from `config.dp` once the data is loaded and before anything is written:
  * sigma is `dp.noise_multiplier`, or with `dp.target_epsilon` the smallest sigma whose
    `num_steps` steps spend that epsilon (the trainer writes the solved value into config.json,
    so a resumed run with other steps is refused rather than silently noised differently);
  * with `dp.max_epsilon`, the run ends after the last step that stays within it.
"""

import dataclasses

import jax

from bigmodel_jax.config import Config
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.train.privacy import accounting
from bigmodel_jax.train.privacy import dp_sgd
from bigmodel_jax.train.privacy import sampling


@dataclasses.dataclass(frozen=True)
class DpPlan:
  step: dp_sgd.DpSgd                  # what the train step needs
  accountant: accounting.Accountant
  capacity: int                       # rows of a padded Poisson batch (all processes)
  num_steps: int                      # steps the budget allows, <= config.num_steps
  max_epsilon: float | None

  def report(self, steps: int) -> dict[str, float]:
    """The privacy spent after `steps` steps, as logged and put in the summary."""
    return {'epsilon': self.accountant.epsilon(steps), 'delta': self.accountant.delta,
            'noise_multiplier': self.step.noise_multiplier, 'clip_norm': self.step.clip_norm,
            'sampling_probability': self.accountant.sampling_probability}


def plan(config: Config, num_train_examples: int, variables_shapes: dict, *,
         batch_multiple: int) -> DpPlan:
  """The plan of `config` (validated) on a training split of `num_train_examples`.

  `variables_shapes` are the model's variable collections (to refuse batch statistics);
  `batch_multiple` is what the padded batch must divide into (processes x devices x micro-batches).
  """
  dp = config.dp
  dp_sgd.check_per_example(variables_shapes, config.model.name)
  if config.batch_size >= num_train_examples:
    raise UserInputError(f'config.batch_size={config.batch_size} must be below the '
                         f'{num_train_examples} training examples for DP-SGD (each step samples '
                         'a fraction of them)')
  if dp.delta >= 1 / num_train_examples:
    raise UserInputError(
        f'config.dp.delta={dp.delta} must be below 1 / {num_train_examples} training examples '
        f'= {1 / num_train_examples:.3g}: a larger delta allows releasing some examples whole')
  probability = config.batch_size / num_train_examples
  sigma = dp.noise_multiplier
  if dp.target_epsilon is not None:
    sigma = accounting.noise_for_epsilon(dp.target_epsilon, dp.delta, probability,
                                         config.num_steps)
  accountant = accounting.Accountant(probability, sigma, dp.delta)
  num_steps = config.num_steps
  if dp.max_epsilon is not None:
    num_steps = accountant.steps_within(dp.max_epsilon, config.num_steps)
    if num_steps == 0:
      raise UserInputError(
          f'config.dp.max_epsilon={dp.max_epsilon} allows no step: one step spends epsilon='
          f'{accountant.epsilon(1):.3g} at delta={dp.delta}; raise the noise or the budget')
  capacity = sampling.capacity(num_train_examples, config.batch_size, num_steps=num_steps,
                               delta=dp.delta, multiple_of=batch_multiple)
  return DpPlan(dp_sgd.DpSgd(float(dp.clip_norm), float(sigma), config.batch_size), accountant,
                capacity, num_steps, dp.max_epsilon)


def model_variables(model, example_inputs) -> dict:
  """Shapes of every variable collection `model` creates (nothing is allocated)."""
  key = jax.random.key(0)
  return jax.eval_shape(lambda: model.init({'params': key, 'dropout': key}, example_inputs,
                                           train=False))
