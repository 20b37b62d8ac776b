"""SIGTERM and Ctrl-C stop a run between two steps, after a checkpoint, instead of mid-write.

SIGTERM is what a TPU VM being preempted or a cluster scheduler sends before killing a job. While
`PreemptionWatcher` is active, the first SIGTERM or SIGINT only sets a flag that the loop reads
after each step; a second one acts as usual (a stuck save can still be interrupted).
"""

import signal
import threading

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionWatcher:
  """Context manager; `signal` is the number of the first signal received, or None."""

  def __init__(self):
    self.signal: int | None = None
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    del frame
    self.signal = signum
    logging.warning('%s received: finishing the current step, then saving a checkpoint '
                    '(send it again to stop at once).', signal.Signals(signum).name)
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def __enter__(self) -> 'PreemptionWatcher':
    # Signal handlers can only be installed from the main thread; elsewhere (a test runner's
    # worker thread) signals keep their usual effect.
    if threading.current_thread() is threading.main_thread():
      self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
