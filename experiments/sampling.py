"""Text from a trained language model in a workdir, shared by the train and generate commands."""

import jax
import numpy as np

from bigmodel_jax.config import SampleConfig
from bigmodel_jax.data.tokenizers import Tokenizer
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer.generate import generate
from bigmodel_jax.run import trained as trained_lib


def encode_prompt(prompt: str, tokenizer: Tokenizer, name: str) -> np.ndarray:
  """The token ids of `prompt`; UserInputError naming `name` (its flag or config field) where
  it is empty or holds what `tokenizer` cannot encode.

  `experiments.train` calls it before training: a char tokenizer knows only the training text's
  characters (the default prompt, a newline, is not in every text), and a run must not fail
  over its sample once it has trained.
  """
  if not prompt:
    raise UserInputError(f"{name}='': must not be empty (use a newline to start from scratch)")
  try:
    return tokenizer.encode(prompt)
  except UserInputError as e:
    raise UserInputError(f'{name}={prompt!r}: {e.problem}') from None


def sample_from_workdir(workdir: str, sample: SampleConfig, *, num_samples: int = 1,
                        seed: int = 0, prompt_name: str = '--prompt') -> str:
  """`num_samples` continuations of `sample.prompt` (named `prompt_name` in errors), joined by
  separator lines."""
  trained = trained_lib.load_trained(workdir)
  if trained.spec.task != 'language_modeling':
    raise UserInputError(f'holds a {trained.spec.task} model; generation needs a language model '
                         '(model transformer)', subject='workdir', value=workdir)
  tokenizer = trained.spec.tokenizer
  prompt = np.tile(encode_prompt(sample.prompt, tokenizer, prompt_name)[None, :],
                   (num_samples, 1))
  tokens = generate(trained.model, trained.params, prompt, max_new_tokens=sample.num_tokens,
                    rng=jax.random.PRNGKey(seed), temperature=sample.temperature,
                    top_k=sample.top_k or None,
                    top_p=sample.top_p if sample.top_p < 1.0 else None)
  return '\n----------\n'.join(tokenizer.decode(row) for row in tokens)
