"""GPT-2 small (124M parameters): 12 layers, 12 heads, d_model 768 (shared settings: gpt2.py)."""

from experiments.configs import gpt2


def get_config():
  return gpt2.get_gpt2_config(num_layers=12, num_heads=12, d_model=768, remat='none')
