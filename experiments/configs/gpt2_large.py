"""GPT-2 large (774M parameters): 36 layers, 20 heads, d_model 1280 (shared settings: gpt2.py)."""

from experiments.configs import gpt2


def get_config():
  return gpt2.get_gpt2_config(num_layers=36, num_heads=20, d_model=1280, remat='dots')
