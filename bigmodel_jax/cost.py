"""The arithmetic of cost: parameters, FLOPs, achieved FLOP/s, MFU and memory, in one place.

FLOP conventions (stated in every report):
- models with their own formula (`train_flops_per_example`; the transformer LM: PaLM / nanoGPT's
  `6 N + 12 L d T` per token, see models/transformer.py);
- other models: XLA's count (`cost_analysis()['flops']`) of the train step on the whole global
  batch, as one program before it is split over devices, and without gradient accumulation: XLA
  counts a loop's body once, so a step that scans over K micro-batches would read K times low.
"""

import dataclasses
import functools
import resource
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
  """One accelerator: dense peak FLOP/s by compute dtype, and its memory (None: not listed)."""
  peak_flops: dict[str, float]
  hbm_bytes: int | None = None


# Dense (no structured sparsity) peak FLOP/s and HBM per chip. float32 on NVIDIA means TF32
# tensor cores (JAX's default matmul precision there). Keys are matched against
# `device.device_kind` as substrings, most specific first. Sources (vendors' pages):
#   H200 (141 GB): https://www.nvidia.com/en-us/data-center/h200/
#   H100 SXM and PCIe (80 GB): https://www.nvidia.com/en-us/data-center/h100/
#   A100: https://www.nvidia.com/en-us/data-center/a100/ (40 or 80 GB: not listed)
#   TPU v6e (Trillium, 32 GiB): https://cloud.google.com/tpu/docs/v6e
#   TPU v5e (16 GiB): https://cloud.google.com/tpu/docs/v5e
#   TPU v5p (95 GiB): https://cloud.google.com/tpu/docs/v5p
#   TPU v4 (32 GiB): https://cloud.google.com/tpu/docs/v4
CHIPS: tuple[tuple[str, Chip], ...] = (
    ('H200', Chip({'bfloat16': 989.5e12, 'float32': 494.7e12}, 141 * 10**9)),
    ('H100 PCIe', Chip({'bfloat16': 756.0e12, 'float32': 378.0e12}, 80 * 10**9)),
    ('H100', Chip({'bfloat16': 989.5e12, 'float32': 494.7e12}, 80 * 10**9)),
    ('A100', Chip({'bfloat16': 312.0e12, 'float32': 156.0e12})),
    ('TPU v6 lite', Chip({'bfloat16': 918.0e12}, 32 * GiB)),
    ('TPU v5 lite', Chip({'bfloat16': 197.0e12}, 16 * GiB)),
    ('TPU v5p', Chip({'bfloat16': 459.0e12}, 95 * GiB)),
    ('TPU v5', Chip({'bfloat16': 459.0e12}, 95 * GiB)),
    ('TPU v4', Chip({'bfloat16': 275.0e12}, 32 * GiB)),
)

def count_params(params: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def xla_flops(fn: Callable[..., Any], *args: Any) -> float | None:
  """XLA's FLOP count of `fn(*args)` (args may be ShapeDtypeStructs), where the backend has one.

  Counted on the lowered program, before compilation: nothing is compiled or allocated, and the
  count is the whole computation's, not one device's share.
  """
  analysis = jax.jit(fn).lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])


def chip(device_kind: str) -> Chip | None:
  """The CHIPS row of `device_kind`, or None where it is not in the table."""
  return next((row for key, row in CHIPS if key in device_kind), None)


def peak_flops(device_kind: str, dtype: str) -> float | None:
  """Peak FLOP/s of one chip for `dtype`, or None where the device or dtype is not in the table."""
  row = chip(device_kind)
  return None if row is None else row.peak_flops.get(dtype)


def mfu(flops_per_second: float, *, device_kind: str, num_devices: int, dtype: str) -> float | None:
  """Model FLOPs utilisation: achieved model FLOP/s over the devices' summed peak."""
  peak = peak_flops(device_kind, dtype)
  if peak is None:
    return None
  return flops_per_second / (peak * num_devices)


@functools.cache
def matmul_ceiling_flops_per_second(size: int = 2048, repeats: int = 3) -> float:
  """FLOP/s of a float32 `size` x `size` matmul on the default device, best of `repeats`.

  The practical ceiling where no peak is known (CPU): what the device reaches on the one
  operation it runs best. Measured once per process; about 0.3 s on 2 CPU cores.
  """
  x = jax.device_put(np.ones((size, size), np.float32))
  matmul = jax.jit(jnp.matmul)
  matmul(x, x).block_until_ready()  # compile
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(x, x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 / best


def utilisation(flops_per_second: float, *, device_kind: str, num_devices: int,
                dtype: str) -> dict[str, Any]:
  """MFU against the devices' peak; where there is no known peak, against a measured ceiling.

  Returns {'mfu': fraction}, or {'mfu': 'unknown peak', 'mfu_vs_measured_matmul': fraction,
  'matmul_ceiling_flops_per_second': ceiling}. CPU devices share the host's cores, so their
  ceiling is the host's; each accelerator has its own.
  """
  value = mfu(flops_per_second, device_kind=device_kind, num_devices=num_devices, dtype=dtype)
  if value is not None:
    return {'mfu': value}
  ceiling = matmul_ceiling_flops_per_second()
  devices = 1 if device_kind == 'cpu' else num_devices
  return {'mfu': 'unknown peak', 'mfu_vs_measured_matmul': flops_per_second / (ceiling * devices),
          'matmul_ceiling_flops_per_second': ceiling}


def peak_memory_bytes() -> dict[str, int]:
  """Peak memory of the fullest local device (GPU, TPU report it) and the host's peak RSS."""
  report = {}
  peaks = [stats['peak_bytes_in_use'] for stats in (d.memory_stats() for d in jax.local_devices())
           if stats and 'peak_bytes_in_use' in stats]
  if peaks:
    report['peak_device_memory_bytes'] = int(max(peaks))
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  report['peak_host_memory_bytes'] = int(rss if sys.platform == 'darwin' else rss * 1024)
  return report


@dataclasses.dataclass(frozen=True)
class ThroughputMeter:
  """Turns (steps, seconds) into examples/s, tokens/s, FLOP/s and MFU: the trainer's logs,
  its cost report and the training benchmark all measure with this one meter."""
  batch_size: int
  tokens_per_example: int | None  # the sequence length of token inputs, else None
  flops_per_step: float | None
  device_kind: str
  num_devices: int
  dtype: str

  def rates(self, steps: int, seconds: float, *,
            with_utilisation: bool = True) -> dict[str, Any]:
    """Per-second rates of `steps` steps in `seconds`; `with_utilisation` adds MFU (on CPU it
    measures the matmul ceiling once per process, so the per-interval logs leave it out)."""
    seconds_per_step = seconds / steps
    rates: dict[str, Any] = {'seconds_per_step': seconds_per_step,
                             'examples_per_second': self.batch_size / seconds_per_step}
    if self.tokens_per_example:
      rates['tokens_per_second'] = rates['examples_per_second'] * self.tokens_per_example
    if self.flops_per_step:
      rates['flops_per_second'] = self.flops_per_step / seconds_per_step
      if with_utilisation:
        rates.update(utilisation(rates['flops_per_second'], device_kind=self.device_kind,
                                 num_devices=self.num_devices, dtype=self.dtype))
    return rates
