"""Sample text from a trained language model: `python -m experiments.generate --workdir=runs/transformer`."""

from absl import flags

from bigmodel_jax.config import SampleConfig
from experiments import cli
from experiments import sampling

_WORKDIR = flags.DEFINE_string('workdir', 'runs/transformer', 'Run directory of a trained LM.')
_PROMPT = flags.DEFINE_string('prompt', '\n', 'Text to continue.')
_NUM_TOKENS = flags.DEFINE_integer('num_tokens', 500, 'Tokens to generate.', lower_bound=1)
_TEMPERATURE = flags.DEFINE_float('temperature', 0.8, 'Sampling temperature; 0 is greedy.',
                                  lower_bound=0.0)
_TOP_K = flags.DEFINE_integer('top_k', 0, 'Keep only the k most likely tokens; 0 keeps all.',
                              lower_bound=0)
_TOP_P = flags.DEFINE_float('top_p', 1.0, 'Nucleus sampling mass; 1 keeps all.', lower_bound=0.0,
                            upper_bound=1.0)
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 1, 'Samples drawn as one batch.', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Sampling seed.')


def main(argv):
  del argv
  sample = SampleConfig(prompt=_PROMPT.value, num_tokens=_NUM_TOKENS.value,
                        temperature=_TEMPERATURE.value, top_k=_TOP_K.value, top_p=_TOP_P.value)
  print(sampling.sample_from_workdir(_WORKDIR.value, sample, num_samples=_NUM_SAMPLES.value,
                                     seed=_SEED.value))


if __name__ == '__main__':
  cli.run(main)
