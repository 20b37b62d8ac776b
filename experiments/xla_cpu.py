"""XLA CPU settings a command starts with, where they were measured to make its steps faster.

jaxlib 0.10 hands every convolution on CPU, the backward ones included, to YNNPACK. For the
CNN's train step (CIFAR-sized images, batch 128) XLA's own convolutions are faster: 133 -> 100
ms of CPU time per step, measured side by side; the transformer's step is unchanged (no
convolutions). So a command appends `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`
to XLA_FLAGS (YNNPACK keeps the matmuls and everything else it takes by default).

XLA aborts at start-up on a flag it does not know, and this one is experimental: it is set only
under the jaxlib versions it was measured with, never when XLA_FLAGS already sets it, and
`BIGMODEL_XLA_CPU_DEFAULTS=off` turns it off. It only concerns the CPU backend; a GPU or TPU
run is unaffected.
"""

import importlib.metadata
import os
import sys
from collections.abc import Mapping

from experiments import allocator

OPT_OUT_VAR = 'BIGMODEL_XLA_CPU_DEFAULTS'
_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
DEFAULT_FLAGS = (f'{_FLAG}=-individual_convolution',)
MEASURED_JAXLIB = ('0.10.',)  # version prefixes the flag was measured (and parses) with


def xla_flags(environ: Mapping[str, str], jaxlib_version: str | None) -> str | None:
  """The XLA_FLAGS to run with, or None to leave the environment as it is."""
  current = environ.get('XLA_FLAGS', '')
  if (environ.get(OPT_OUT_VAR) == 'off' or jaxlib_version is None
      or not jaxlib_version.startswith(MEASURED_JAXLIB) or _FLAG in current):
    return None
  return ' '.join(filter(None, (current, *DEFAULT_FLAGS)))


def _jaxlib_version() -> str | None:
  try:
    return importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return None


def apply_defaults() -> None:
  """Sets XLA_FLAGS as `xla_flags` says, for a command only (never for a library user)."""
  if not allocator.started_as_command(sys.orig_argv):
    return
  flags = xla_flags(os.environ, _jaxlib_version())
  if flags is not None:
    os.environ['XLA_FLAGS'] = flags
