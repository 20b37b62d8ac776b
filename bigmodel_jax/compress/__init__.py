"""Smaller models from trained runs: int8 quantization, magnitude pruning, distillation.

Each file is one method; `report` measures a compressed model against its original. The command
is `python -m experiments.compress`.
"""
