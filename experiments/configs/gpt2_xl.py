"""GPT-2 xl (1.5B parameters): 48 layers, 25 heads, d_model 1600 (shared settings: gpt2.py)."""

from experiments.configs import gpt2


def get_config():
  return gpt2.get_gpt2_config(num_layers=48, num_heads=25, d_model=1600, remat='full')
