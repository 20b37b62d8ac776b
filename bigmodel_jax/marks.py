"""The marks a config field carries, for the run config (config.py) and the model config classes.

  - RESUME: may change when a run resumes: it changes how long or how visibly a run trains, or
    how the same update is split, not what a step computes;
  - SWEEP: may differ between the workers of one sweep (and its reruns) without making their
    trials incomparable.
"""

import dataclasses
from typing import Any

RESUME, SWEEP = 'resume', 'sweep'


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
            resume: bool = False, sweep: bool = False) -> Any:
  """A dataclass field with its default and its marks."""
  return dataclasses.field(default=default, default_factory=factory,
                           metadata={RESUME: resume, SWEEP: sweep})
