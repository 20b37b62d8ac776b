"""Embedding(10,000 words, 32) -> LSTM(128) -> Dense with sigmoid outputs and binary
cross-entropy: the classic sentiment classifier, here on the genre of Shakespeare passages.

Also `--dataset=imdb_reviews` (TFDS, prepared offline), its original task.
"""

from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.model = base.model('lstm', embed_dim=32, hidden_size=128)
  config.data.name = 'shakespeare_genre'
  config.data.tokenizer = 'word'
  config.data.vocab_size = 10_000
  config.data.seq_len = 64             # words per passage
  config.loss = 'binary_cross_entropy'  # one sigmoid per class
  config.batch_size = 32
  config.num_steps = 1000
  config.optimizer.learning_rate = 3e-3
  config.eval_every = 250
  config.eval_batches = 0
  return config
