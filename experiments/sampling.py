"""Text from a trained language model in a workdir, shared by the train and generate commands."""

import jax
import numpy as np
from ml_collections import ConfigDict

from bigmodel_jax.data.spec import DataSpec
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer.generate import generate
from bigmodel_jax.run import trained as trained_lib


def check_prompt(sample: ConfigDict, spec: DataSpec) -> None:
  """Raises UserInputError where `sample.prompt` cannot start a sample of a model of `spec`.

  Called before training: a char tokenizer knows only the training text's characters (the
  default prompt, a newline, is not in every text), and a run must not fail over its sample
  once it has trained.
  """
  if not sample.prompt:
    raise UserInputError("config.sample.prompt='': must not be empty (use a newline to start "
                         'from scratch)')
  try:
    spec.tokenizer.encode(sample.prompt)
  except UserInputError as e:
    raise UserInputError(f'config.sample.prompt={sample.prompt!r}: {e.problem}') from None


def sample_from_workdir(workdir: str, sample: ConfigDict, *, num_samples: int = 1,
                        seed: int = 0) -> str:
  """`num_samples` continuations of `sample.prompt`, joined by separator lines."""
  trained = trained_lib.load_trained(workdir)
  if trained.spec.task != 'language_modeling':
    raise UserInputError(f'holds a {trained.spec.task} model; generation needs a language model '
                         '(model transformer)', subject='workdir', value=workdir)
  if not sample.prompt:
    raise UserInputError('must not be empty (use a newline to start from scratch)',
                         subject='prompt', value="''")
  tokenizer = trained.spec.tokenizer
  prompt = np.tile(tokenizer.encode(sample.prompt)[None, :], (num_samples, 1))
  tokens = generate(trained.model, trained.params, prompt, max_new_tokens=sample.num_tokens,
                    rng=jax.random.PRNGKey(seed), temperature=sample.temperature,
                    top_k=sample.top_k or None,
                    top_p=sample.top_p if sample.top_p < 1.0 else None)
  return '\n----------\n'.join(tokenizer.decode(row) for row in tokens)
