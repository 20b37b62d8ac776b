"""The one exception type for bad user input.

Entry points print a `UserInputError` as a single line and exit with status 2, before any work
starts and before anything is written to the workdir. Everything else that goes wrong is a bug
and keeps its traceback.
"""


class UserInputError(ValueError):
  """A flag, config field or data file is not what the program needs.

  The message names the flag, field or file, the bad value, and what is allowed.
  """
