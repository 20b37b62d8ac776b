"""Makes the repository importable when pytest runs without an installed package."""

import pathlib
import sys

_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
