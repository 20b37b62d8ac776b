"""PyTorch mirrors of the char GPT and the CNN, layer for layer, for `benchmarks.pytorch`.

Each mirrors its Flax model (bigmodel_jax/models/transformer.py, cnn.py) in sizes, biases,
LayerNorm epsilon (Flax's 1e-6), GELU (Flax's tanh approximation), tied embeddings and SAME
padding, so both hold the same parameters and do the same arithmetic. Attention is written out
as softmax(QK^T/sqrt(d_k))V like ours, not through a fused kernel. Only the memory order
differs where each framework has its default: NCHW images here, NHWC in ours (hence the head's
flattened input is ordered C,H,W here and H,W,C there; same sizes).

Imports torch: import this module only once torch is known to be installed.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

_LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default


class Block(nn.Module):
  """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)); as transformer.Block."""

  def __init__(self, d_model: int, num_heads: int, mlp_ratio: int):
    super().__init__()
    self.num_heads = num_heads
    self.attention_norm = nn.LayerNorm(d_model, eps=_LAYER_NORM_EPS)
    self.query = nn.Linear(d_model, d_model)
    self.key = nn.Linear(d_model, d_model)
    self.value = nn.Linear(d_model, d_model)
    self.out = nn.Linear(d_model, d_model)
    self.mlp_norm = nn.LayerNorm(d_model, eps=_LAYER_NORM_EPS)
    self.mlp_in = nn.Linear(d_model, mlp_ratio * d_model)
    self.mlp_out = nn.Linear(mlp_ratio * d_model, d_model)

  def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    b, t, d = x.shape
    heads = lambda y: y.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)
    q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
    logits = q @ k.transpose(-2, -1) / math.sqrt(d // self.num_heads)
    weights = torch.softmax(logits.masked_fill(~mask, torch.finfo(logits.dtype).min), dim=-1)
    return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))

  def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = x + self.attention(self.attention_norm(x), mask)
    return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x)), approximate='tanh'))


class GPT(nn.Module):
  """Tokens (B, T) -> logits (B, T, vocab); as transformer.TransformerLM with tied embeddings."""

  def __init__(self, *, vocab_size: int, max_len: int, num_layers: int, num_heads: int,
               d_model: int, mlp_ratio: int):
    super().__init__()
    self.token_embed = nn.Embedding(vocab_size, d_model)
    self.position_embed = nn.Embedding(max_len, d_model)
    self.blocks = nn.ModuleList(Block(d_model, num_heads, mlp_ratio) for _ in range(num_layers))
    self.final_norm = nn.LayerNorm(d_model, eps=_LAYER_NORM_EPS)
    for embedding in (self.token_embed, self.position_embed):
      nn.init.normal_(embedding.weight, std=0.02)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    t = tokens.shape[1]
    mask = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()
    x = self.token_embed(tokens) + self.position_embed(torch.arange(t, device=tokens.device))
    for block in self.blocks:
      x = block(x, mask)
    return self.final_norm(x) @ self.token_embed.weight.T


class CNN(nn.Module):
  """Images (B, C, H, W) -> logits; as cnn.CNN: conv3x3-ReLU blocks, 2x2 max-pool between them."""

  def __init__(self, *, in_channels: int, image_size: int, num_outputs: int,
               conv_features: tuple[int, ...], dense_features: tuple[int, ...],
               dropout_rate: float):
    super().__init__()
    layers, channels, size = [], in_channels, image_size
    for i, features in enumerate(conv_features):
      layers += [nn.Conv2d(channels, features, 3, padding='same'), nn.ReLU()]
      if i < len(conv_features) - 1:
        layers.append(nn.MaxPool2d(2, 2))
        size //= 2
      channels = features
    layers.append(nn.Flatten())
    width = channels * size * size
    for features in dense_features:
      layers += [nn.Linear(width, features), nn.ReLU(), nn.Dropout(dropout_rate)]
      width = features
    layers.append(nn.Linear(width, num_outputs))
    self.layers = nn.Sequential(*layers)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    return self.layers(images)


def adamw(model: nn.Module, *, learning_rate: float, b1: float, b2: float, eps: float,
          weight_decay: float) -> torch.optim.AdamW:
  """AdamW decaying matrices and embeddings only, as bigmodel_jax.train.optimizers.decay_mask."""
  decayed = [p for p in model.parameters() if p.ndim > 1]
  others = [p for p in model.parameters() if p.ndim <= 1]
  return torch.optim.AdamW([{'params': decayed, 'weight_decay': weight_decay},
                            {'params': others, 'weight_decay': 0.0}],
                           lr=learning_rate, betas=(b1, b2), eps=eps)


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, grad_clip_norm: float):
  """`step(inputs, targets) -> loss`: forward, cross-entropy, backward, clip, update (eager)."""

  def step(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    loss.backward()
    if grad_clip_norm > 0:
      nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
    optimizer.step()
    return loss

  return step


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())
