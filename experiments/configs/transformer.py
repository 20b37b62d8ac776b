"""Character-level Transformer LM on the embedded Shakespeare plays, sized for a laptop CPU.

The preset for accelerators (nanoGPT's shakespeare-char size) is transformer_shakespeare_char.py.
"""

from bigmodel_jax import config as config_lib
from experiments.configs import base


def get_config():
  config = base.get_base_config()
  config.model = base.model('transformer', num_layers=2, num_heads=4, d_model=128)

  config.data.name = 'shakespeare'
  config.data.seq_len = 128
  config.data.tokenizer = 'char'

  # ~2.5M tokens: under 2 minutes on an idle 2-core CPU, validation loss ~1.66 (test ~1.63).
  # Muon at a high rate on 2 layers beat AdamW on these 4 layers for 2000 steps (1.674) in less
  # than half the time; README, Speed on CPU, has the runs that chose it.
  config.batch_size = 16
  config.num_steps = 1200
  config.optimizer.name = 'muon'
  config.optimizer.learning_rate = 1.2e-2
  config.optimizer.warmup_steps = 100
  config.optimizer.b2 = 0.99
  config.optimizer.weight_decay = 0.1
  config.log_every = 100
  config.eval_every = 500
  config.eval_batches = 20
  config.checkpoint_every = 500

  # The text printed after training (and the defaults of experiments.generate).
  config.sample = base.section(config_lib.SampleConfig)
  return config
