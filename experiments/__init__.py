"""Entry points a researcher runs: train, evaluate, generate, predict, export, plot. Thin absl apps.

Started as `python -m experiments.NAME`, a command first re-executes itself with a faster malloc
preloaded (see allocator.py). That happens here, in the package every command imports first,
before jax is imported: the second start then costs a bare Python start-up (about 0.1 s), not
a second import of jax and flax (about 3 s). Before that, XLA_FLAGS gets the CPU settings of
xla_cpu.py, which the re-executed process inherits.
"""

from experiments import allocator
from experiments import xla_cpu

xla_cpu.apply_defaults()
allocator.reexec_with_faster_malloc()
