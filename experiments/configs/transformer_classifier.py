"""Transformer encoder text classifier: genre (comedy/history/tragedy) of Shakespeare passages.

Also `--dataset=imdb_reviews` (TFDS, prepared offline) for sentiment.
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.model.name = 'transformer_classifier'
  config.model.num_layers = 2
  config.model.num_heads = 4
  config.model.d_model = 128
  config.model.mlp_ratio = 4
  config.model.dropout_rate = 0.1
  config.model.attention_dropout_rate = 0.0
  config.model.causal = False              # True: attend as the LM does (an LM trunk transfers)
  config.model.pool = 'mean'                # or 'last': the head reads the last token's state
  base.add_transformer_options(config.model)
  config.data.name = 'shakespeare_genre'
  config.data.seq_len = 128
  config.batch_size = 32
  config.num_steps = 1000
  config.optimizer.learning_rate = 1e-3
  config.eval_every = 250
  config.eval_batches = 40
  return config
