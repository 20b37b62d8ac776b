"""The one exception type for bad user input.

Entry points print a `UserInputError` as a single line and exit with status 2, before any work
starts and before anything is written to the workdir. Everything else that goes wrong is a bug
and keeps its traceback.
"""


class UserInputError(ValueError):
  """A flag, config field or data file is not what the program needs.

  The message names the flag, field or file, the bad value, and what is allowed.
  """


class NonFiniteError(RuntimeError):
  """The loss or a gradient became NaN or infinite and the run was told to stop on it.

  Entry points print it as one line and exit with status 1.
  """


class Preempted(Exception):
  """The run stopped on SIGTERM or SIGINT after saving a checkpoint; rerunning it resumes.

  Entry points print it as one line and exit with status 128 + the signal number, as a shell
  reports a process ended by that signal.
  """

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum
