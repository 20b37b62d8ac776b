"""The README's privacy tables: DP-SGD test accuracy against epsilon, FedAvg against centralised.

`python -m experiments.benchmarks.privacy [--steps=1000] [--rounds=200]` trains each row in a
temporary workdir (digits MLP) and prints Markdown tables of test accuracy.
"""

import tempfile

from absl import flags

from bigmodel_jax.federated.fedavg import train_federated
from bigmodel_jax.infer.evaluate import evaluate_trained
from bigmodel_jax.run import trained as trained_lib
from bigmodel_jax.train.loop import train_and_evaluate
from experiments import cli
from experiments.configs import federated as federated_config
from experiments.configs import mlp as mlp_config

_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps of each DP-SGD row.')
_ROUNDS = flags.DEFINE_integer('rounds', 200, 'FedAvg rounds of each federated row.')


def _test_accuracy(workdir: str) -> float:
  return evaluate_trained(trained_lib.load_trained(workdir), 'test',
                          batch_size=256)['metrics']['accuracy']


def _dp_row(target_epsilon):
  config = mlp_config.get_config()
  config.num_steps, config.log_every, config.eval_every = _STEPS.value, 250, _STEPS.value
  if target_epsilon is not None:
    config.dp.enabled, config.dp.target_epsilon = True, target_epsilon
  with tempfile.TemporaryDirectory() as workdir:
    summary = train_and_evaluate(config, workdir)
    privacy = summary.get('privacy', {})
    return (privacy.get('epsilon'), privacy.get('noise_multiplier'), _test_accuracy(workdir))


def _federated_row(num_clients, alpha):
  config = federated_config.get_config()
  config.num_steps, config.eval_every = _ROUNDS.value, _ROUNDS.value
  config.federated.num_clients, config.federated.dirichlet_alpha = num_clients, alpha
  config.federated.clients_per_round = max(1, num_clients // 10)
  with tempfile.TemporaryDirectory() as workdir:
    train_federated(config, workdir)
    return _test_accuracy(workdir)


def main(argv):
  del argv
  print('| target epsilon | epsilon (delta 1e-5) | noise multiplier | test accuracy |')
  print('| --- | --- | --- | --- |')
  for target in (1.0, 3.0, 8.0, None):
    epsilon, sigma, accuracy = _dp_row(target)
    print(f"| {target or 'no DP'} | {epsilon and f'{epsilon:.3f}' or '-'} | "
          f"{sigma and f'{sigma:.3f}' or '-'} | {accuracy:.4f} |", flush=True)
  centralised = _dp_row(None)[2]
  print(f'\ncentralised (no DP, {_STEPS.value} steps): test accuracy {centralised:.4f}\n')
  print('| clients | per round | split | test accuracy | gap to centralised (points) |')
  print('| --- | --- | --- | --- | --- |')
  for clients, alpha in ((10, None), (100, None), (100, 1.0), (100, 0.5), (100, 0.1)):
    accuracy = _federated_row(clients, alpha)
    split = 'IID' if alpha is None else f'Dirichlet alpha={alpha}'
    print(f'| {clients} | {max(1, clients // 10)} | {split} | {accuracy:.4f} | '
          f'{100 * (centralised - accuracy):.1f} |', flush=True)


if __name__ == '__main__':
  cli.run(main)
