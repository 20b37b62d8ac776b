import os
import signal

from bigmodel_jax.train.preemption import PreemptionWatcher


def test_first_signal_sets_the_flag_second_acts_as_before():
  received = []
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
  try:
    with PreemptionWatcher() as watcher:
      assert watcher.signal is None
      os.kill(os.getpid(), signal.SIGTERM)
      assert watcher.signal == signal.SIGTERM and received == []
      os.kill(os.getpid(), signal.SIGTERM)  # e.g. a save that hangs: the usual effect again
      assert received == [signal.SIGTERM]
    os.kill(os.getpid(), signal.SIGTERM)
    assert received == [signal.SIGTERM, signal.SIGTERM]
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_ctrl_c_is_caught_and_default_handler_restored_after():
  with PreemptionWatcher() as watcher:
    os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt outside the watcher
    assert watcher.signal == signal.SIGINT
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
