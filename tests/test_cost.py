"""The cost arithmetic against hand counts."""

import jax
import jax.numpy as jnp
import pytest

from bigmodel_jax import cost

def test_mfu_against_the_peak_table():
  # 8 H100s at 40% of their 989.5 TFLOP/s bf16 dense peak.
  achieved = 0.4 * 8 * 989.5e12
  assert cost.mfu(achieved, device_kind='NVIDIA H100 80GB HBM3', num_devices=8,
                  dtype='bfloat16') == pytest.approx(0.4)
  # A 4-layer LM step of 64 x 128 tokens at 100 ms on one A100 (312 TFLOP/s bf16).
  flops = 64 * 128 * (6 * 10e6 + 12 * 4 * 512 * 128)
  assert cost.mfu(flops / 0.1, device_kind='NVIDIA A100-SXM4-40GB', num_devices=1,
                  dtype='bfloat16') == pytest.approx(flops / 0.1 / 312e12)
  assert flops == 8192 * 63_145_728 and flops / 0.1 / 312e12 == pytest.approx(0.01658, rel=1e-3)


@pytest.mark.parametrize('device_kind,dtype,peak', [
    ('NVIDIA H100 80GB HBM3', 'bfloat16', 989.5e12),
    ('NVIDIA H100 PCIe', 'bfloat16', 756e12),
    ('NVIDIA H200', 'bfloat16', 989.5e12),
    ('NVIDIA A100-SXM4-80GB', 'bfloat16', 312e12),
    ('TPU v4', 'bfloat16', 275e12),
    ('TPU v5 lite', 'bfloat16', 197e12),
    ('TPU v5p', 'bfloat16', 459e12),
    ('TPU v6 lite', 'bfloat16', 918e12),
])
def test_peak_table(device_kind, dtype, peak):
  assert cost.peak_flops(device_kind, dtype) == peak


@pytest.mark.parametrize('device_kind,dtype', [('cpu', 'float32'), ('NVIDIA GeForce RTX 4090', 'bfloat16'),
                                               ('TPU v4', 'float32')])
def test_unknown_peak_gives_no_mfu(device_kind, dtype):
  assert cost.mfu(1e12, device_kind=device_kind, num_devices=1, dtype=dtype) is None


def test_xla_flops_of_a_matmul():
  a = jax.ShapeDtypeStruct((8, 32), jnp.float32)
  b = jax.ShapeDtypeStruct((32, 16), jnp.float32)
  assert cost.xla_flops(jnp.matmul, a, b) == 2 * 8 * 32 * 16


def test_without_a_peak_utilisation_is_against_the_measured_matmul(monkeypatch):
  monkeypatch.setattr(cost, 'matmul_ceiling_flops_per_second', lambda: 400e9)
  # CPU devices share the host's cores: 8 fake devices still have one host's ceiling.
  assert cost.utilisation(100e9, device_kind='cpu', num_devices=8, dtype='float32') == {
      'mfu': 'unknown peak', 'mfu_vs_measured_matmul': 0.25,
      'matmul_ceiling_flops_per_second': 400e9}
  # An accelerator missing from the table: each device has its own ceiling.
  assert cost.utilisation(100e9, device_kind='NVIDIA GeForce RTX 4090', num_devices=2,
                          dtype='bfloat16')['mfu_vs_measured_matmul'] == 0.125
  # A known peak needs no measurement.
  assert cost.utilisation(0.4 * 989.5e12, device_kind='NVIDIA H100 80GB HBM3', num_devices=1,
                          dtype='bfloat16') == {'mfu': pytest.approx(0.4)}


def test_the_matmul_ceiling_is_measured_once_per_process():
  cost.matmul_ceiling_flops_per_second.cache_clear()
  ceiling = cost.matmul_ceiling_flops_per_second(size=256)
  assert ceiling > 1e6  # 2 * 256**3 FLOPs in well under 30 s
  assert cost.matmul_ceiling_flops_per_second(size=256) is ceiling
