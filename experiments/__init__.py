"""Entry points a researcher runs: train, evaluate, generate, predict, export, plot. Thin absl apps.

Started as `python -m experiments.NAME`, a command first re-executes itself with a faster malloc
preloaded (see allocator.py). That happens here, in the package every command imports first,
before jax is imported: the second start then costs a bare Python start-up (about 0.1 s), not
a second import of jax and flax (about 3 s).
"""

from experiments import allocator

allocator.reexec_with_faster_malloc()
