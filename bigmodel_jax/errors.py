"""The exception types the entry points turn into one line and an exit status.

The library raises `UserInputError` for bad input, before any work starts and before anything
is written to the workdir, naming what is wrong in its own terms (a config field, a dataset, a
workdir, a file); it never names a command-line flag. `experiments/cli.py` words it for the
command that was run, naming the flag that gave the value, and exits with status 2. Everything else that
goes wrong is a bug and keeps its traceback.
"""

from typing import Any

# The inputs the library refers to by role; each command line names them with its own flag.
SUBJECTS = ('dataset', 'workdir', 'init_from', 'inputs', 'text', 'exported', 'output',
            'platforms', 'space', 'storage', 'sweepdir', 'metric', 'sparsity', 'nm',
            'port', 'eps', 'attack', 'norm', 'steps', 'step_size', 'method', 'topology')


def first_line(error: BaseException) -> str:
  """'Type: the first line of the message', for an error quoted inside a one-line message."""
  text = str(error).strip()
  return f'{type(error).__name__}: {text.splitlines()[0]}' if text else type(error).__name__


class UserInputError(ValueError):
  """Input (a config field, dataset, workdir or file) that is not what the program needs.

  Attributes:
    problem: what is wrong with the value and what is allowed.
    subject: None when `problem` names what it is about (e.g. 'config.batch_size must be ...'),
      else one of SUBJECTS: the input whose `value` is wrong.
    value: the bad value of `subject`.
  """

  def __init__(self, problem: str, *, subject: str | None = None, value: Any = None):
    if subject is not None and subject not in SUBJECTS:
      raise ValueError(f'subject={subject!r} is not one of {SUBJECTS}')
    super().__init__(problem)
    self.problem = problem
    self.subject = subject
    self.value = value

  def __str__(self) -> str:
    if self.subject is None:
      return self.problem
    return f'{self.subject} {self.value}: {self.problem}'


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
