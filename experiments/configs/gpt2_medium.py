"""GPT-2 medium (350M parameters): 24 layers, 16 heads, d_model 1024 (shared settings: gpt2.py)."""

from experiments.configs import gpt2


def get_config():
  return gpt2.get_gpt2_config(num_layers=24, num_heads=16, d_model=1024, remat='none')
