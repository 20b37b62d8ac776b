"""What the GPT-2 presets share (gpt2_small/medium/large/xl.py): GPT-2's shape at a size.

Radford et al. 2019 (table 2) and nanoGPT's reproduction: learned positions, context 1024,
tied embeddings, MLP 4 x d_model, a vocabulary of 50257 BPE ids padded to 50304 (a multiple of
64, as nanoGPT pads it, so tensor parallelism can split it). bfloat16 compute with float32
params, scanned layers (one block compiled whatever the depth), AdamW as nanoGPT's
(lr 6e-4, betas 0.9/0.95, weight decay 0.1, warmup 2000), 0.5M tokens a step.

Train on a corpus of your own (--dataset=textfile:PATH, a BPE of config.data.vocab_size ids);
`python -m experiments.plan --config=experiments/configs/gpt2_small.py --topology=v5e:2x2`
plans one without reading any data.
"""

from experiments.configs import transformer


def get_gpt2_config(*, num_layers: int, num_heads: int, d_model: int, remat: str = 'none'):
  config = transformer.get_config()
  config.model.num_layers = num_layers
  config.model.num_heads = num_heads
  config.model.d_model = d_model
  config.model.mlp_ratio = 4
  config.model.dtype = 'bfloat16'
  config.model.scan_layers = True
  config.model.remat = remat
  config.model.causal_block_size = 512  # 2 query blocks per 1024: the skipped quarter of QK^T
  config.data.tokenizer = 'bpe'
  config.data.vocab_size = 50304
  config.data.seq_len = 1024
  config.batch_size = 512  # x 1024 tokens = 0.5M tokens a step
  config.num_steps = 600_000
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 6e-4
  config.optimizer.warmup_steps = 2000
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.1
  config.log_every = 100
  config.eval_every = 2000
  config.checkpoint_every = 2000
  return config
