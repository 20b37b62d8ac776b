"""nanoGPT's shakespeare-char size (6 layers, 6 heads, width 384, context 256, ~10.7M params).

For accelerators: `python -m experiments.train --config=experiments/configs/transformer_shakespeare_char.py
--dataset=tiny_shakespeare` (or textfile:PATH). nanoGPT reaches val loss ~1.47 with these settings.
"""

from experiments.configs import transformer


def get_config():
  config = transformer.get_config()
  config.model.num_layers = 6
  config.model.num_heads = 6
  config.model.d_model = 384
  config.model.dropout_rate = 0.2
  config.model.attention_dropout_rate = 0.2
  config.model.dtype = 'bfloat16'
  config.data.seq_len = 256
  config.batch_size = 64
  config.num_steps = 5000
  config.optimizer.name = 'adamw'  # nanoGPT's settings, not the CPU default's Muon
  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 100
  config.optimizer.min_lr_ratio = 0.1
  config.eval_every = 250
  config.eval_batches = 200
  config.checkpoint_every = 1000
  return config
