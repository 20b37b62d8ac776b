"""Text from a trained language model in a workdir, shared by the train and generate commands."""

import jax
import numpy as np
from ml_collections import ConfigDict

from bigmodel_jax import data
from bigmodel_jax.errors import UserInputError
from bigmodel_jax.infer.generate import generate
from bigmodel_jax.train import run_files


def sample_from_workdir(workdir: str, sample: ConfigDict, *, num_samples: int = 1,
                        seed: int = 0) -> str:
  """`num_samples` continuations of `sample.prompt`, joined by separator lines."""
  trained = run_files.load_trained(workdir)
  if trained.run.metadata['task'] != 'language_modeling':
    raise UserInputError(f"--workdir={workdir} holds a {trained.run.metadata['task']} model; "
                         'generation needs a language model (--model=transformer)')
  if not sample.prompt:
    raise UserInputError('--prompt must not be empty (use a newline to start from scratch)')
  tokenizer = data.tokenizer_from_dict(trained.run.metadata['tokenizer'])
  prompt = np.tile(tokenizer.encode(sample.prompt)[None, :], (num_samples, 1))
  tokens = generate(trained.model, trained.params, prompt, max_new_tokens=sample.num_tokens,
                    rng=jax.random.PRNGKey(seed), temperature=sample.temperature,
                    top_k=sample.top_k or None,
                    top_p=sample.top_p if sample.top_p < 1.0 else None)
  return '\n----------\n'.join(tokenizer.decode(row) for row in tokens)
