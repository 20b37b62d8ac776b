"""What every entry point shares: flag parsing and the one-line, exit-status-2 error for bad input."""

import logging as logging_lib
import os
import sys
import tempfile
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from bigmodel_jax import compile_cache
from bigmodel_jax import config as config_lib
from bigmodel_jax import models
from bigmodel_jax import paths
from bigmodel_jax.errors import NonFiniteError, Preempted, UserInputError

CONFIG_DIR = os.path.join(os.path.dirname(__file__), 'configs')
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The project's own code; a virtual environment inside the checkout (.venv) is not.
_OWN_CODE = tuple(os.path.join(_PROJECT_ROOT, package) + os.sep
                  for package in ('bigmodel_jax', 'experiments'))


def fail(message: str) -> None:
  """Prints one line to stderr and exits with status 2 (bad input; nothing was done)."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def describe(error: UserInputError) -> str:
  """The library's error in the terms of the command line: its subject becomes the flag.

  Every command names a run directory --workdir, a dataset --dataset, an input file --inputs,
  and so on (errors.SUBJECTS), so the library never needs to know the flags.
  """
  if error.subject is None:
    return error.problem
  return f'--{error.subject}={error.value}: {error.problem}'


def _flag_value(argv: Sequence[str], name: str) -> str | None:
  """The value of --name=V or --name V in argv, read before absl parses it."""
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
    if arg == f'--{name}' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def define_config_flag(argv: Sequence[str], default_model: str) -> None:
  """Defines --config, defaulting to experiments/configs/<--model>.py.

  The default depends on --model, so it is read from argv before absl parses it; this is what
  lets `--model=cnn --config.num_steps=10` work without naming the config file.
  """
  model = _flag_value(argv, 'model') or default_model
  fail_unless_model(model)
  path = os.path.join(CONFIG_DIR, f'{model}.py')
  try:
    config_flags.DEFINE_config_file('config', path, 'Config file (default: configs/<--model>.py); '
                                    'override fields with --config.field=value.', lock_config=True)
  except (AttributeError, KeyError) as e:  # an override of a field the config does not have
    field = str(e).strip('"\'')
    flag = next((a.split('=')[0] for a in argv if a.startswith('--config.') and field in a), field)
    fail(f'{flag}: the config has no field {field!r} (the fields are in '
         f'{os.path.relpath(_flag_value(argv, "config") or path)})')


def run_config(model_flag: flags.FlagHolder) -> config_lib.Config:
  """The typed config of --config and its --config.FIELD overrides, converted once, here.

  --model names the default config file; naming another model's file with --config as well is
  refused, since the two disagree.
  """
  config = flags.FLAGS.config
  if config.model.name != model_flag.value and flags.FLAGS[model_flag.name].present:
    fail(f'--model={model_flag.value} disagrees with config.model.name={config.model.name!r} of '
         '--config; give one of them')
  return config_lib.as_config(config)


def check_writable_folder(flag: str, path: str) -> None:
  """Exits with one line unless `path` is a folder this process can write, or can be made one.

  Probed by making (and removing) a folder in it or in its nearest existing parent, so nothing
  is left behind: permission bits alone would not tell (root passes them on a read-only mount).
  A bucket (gs://) is checked by the run itself when it takes its lock (run/bucket_lock.py).
  """
  if not paths.is_local(path):
    return
  existing = os.path.abspath(path)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    fail(f'--{flag}={path}: ' + ('exists and is not a folder' if existing ==
                                 os.path.abspath(path) else f'{existing} is not a folder'))
  try:
    os.rmdir(tempfile.mkdtemp(prefix='.write-check-', dir=existing))
  except OSError as e:
    fail(f'--{flag}={path}: cannot be written ({e.strerror} in {existing})')


def fail_unless_model(name: str) -> None:
  """Exits with status 2 unless `name` is a model of the registry (which does the check)."""
  try:
    models.supported_tasks(name)
  except UserInputError:
    fail(f"--model={name!r} is unknown; choose one of: {', '.join(sorted(models.MODELS))}")


def _parse_flags(argv: list[str], default_model: str | None) -> list[str]:
  if default_model is not None:
    define_config_flag(argv, default_model)
  try:
    rest = flags.FLAGS(argv)
    if 'config' in flags.FLAGS:
      flags.FLAGS.config.get('model')  # a --config file that failed to load raises here
    return rest
  except flags.Error as e:
    fail(str(e).splitlines()[0])
  except OSError as e:  # ml_collections' report of a --config file it could not load
    fail(f"--config={_flag_value(argv, 'config')}: cannot be loaded: "
         f'{str(e).strip().splitlines()[-1].strip()}')
  except Exception as e:  # pylint: disable=broad-except  # the config file is Python: any error
    if not _raised_loading_config(e):
      raise
    why = (f'{type(e).__name__}: {str(e).strip().splitlines()[0]}' if str(e).strip() else
           type(e).__name__)
    if isinstance(e, AttributeError) and 'get_config' in str(e):
      why = 'it defines no get_config()'
    fail(f"--config={_flag_value(argv, 'config')}: cannot be loaded: {why}")


def _raised_loading_config(error: BaseException) -> bool:
  """Whether `error` came from running a --config file (a syntax error, no get_config, ...)."""
  frame = error.__traceback__
  while frame is not None:
    if frame.tb_frame.f_code.co_filename == config_flags.config_flags.__file__:
      return True
    frame = frame.tb_next
  return False


class _OnlyOwnInfo(logging_lib.Filter):
  """Keeps INFO lines of this project; libraries (Orbax logs every save step) only from WARNING."""

  def filter(self, record: logging_lib.LogRecord) -> bool:
    return (record.levelno >= logging_lib.WARNING
            or os.path.abspath(record.pathname).startswith(_OWN_CODE))


def run(main: Callable[[Sequence[str]], None], *, config_for_model: str | None = None) -> None:
  """absl's app.run, but errors the user can act on end with one line and their exit status.

  Bad flags and UserInputError: 2. NonFiniteError: 1. Preempted (SIGTERM/SIGINT, checkpoint
  saved): 128 + the signal number. With `config_for_model`, the command also takes --config,
  defaulting to the config of --model (whose default this names); it is defined when the
  command runs, not when its module is imported.
  """

  def guarded_main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value)")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_OnlyOwnInfo())
    try:
      # Before anything compiles; rerunning a command then loads its programs from the cache.
      cache_dir = compile_cache.dir_from_environment(os.environ)
      if cache_dir:
        compile_cache.enable(cache_dir)
      main(argv)
    except UserInputError as e:
      fail(describe(e))
    except NonFiniteError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)
    except Preempted as e:
      print(str(e), file=sys.stderr)
      sys.exit(128 + e.signum)

  app.run(guarded_main,
          flags_parser=lambda argv: _parse_flags(argv, config_for_model))
