"""Transformer encoder text classifier: genre (comedy/history/tragedy) of Shakespeare passages.

Also `--dataset=imdb_reviews` (TFDS, prepared offline) for sentiment.
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  # causal=True attends as the LM does (an LM trunk transfers); pool='last' reads the last
  # token's state instead of the mean.
  config.model = base.model('transformer_classifier', num_layers=2, num_heads=4, d_model=128,
                            dropout_rate=0.1, causal=False, pool='mean')
  config.data.name = 'shakespeare_genre'
  config.data.seq_len = 128
  config.batch_size = 32
  config.num_steps = 1000
  config.optimizer.learning_rate = 1e-3
  config.eval_every = 250
  config.eval_batches = 40
  return config
