"""Inference: generation with a KV cache, prediction on new inputs, export for serving."""
