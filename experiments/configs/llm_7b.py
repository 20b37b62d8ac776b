"""A 7B-class decoder (LLaMA-7B's shape on this codebase's GPT blocks): 32 layers, 32 heads,
d_model 4096, MLP 4 x d_model, context 2048, a 32000-id vocabulary: 6.58B parameters.

bfloat16 compute with float32 params (and AdamW state: 12 bytes a parameter, 79 GB before
activations, so it needs FSDP over several chips: plan it first with experiments.plan), scanned
layers, full remat, 1M tokens a step.
"""

from experiments.configs import gpt2


def get_config():
  config = gpt2.get_gpt2_config(num_layers=32, num_heads=32, d_model=4096, remat='full')
  config.data.vocab_size = 32000
  config.data.seq_len = 2048
  config.model.causal_block_size = 1024
  config.batch_size = 512  # x 2048 tokens = 1M tokens a step
  config.optimizer.learning_rate = 3e-4
  config.num_steps = 250_000
  return config
