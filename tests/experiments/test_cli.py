import logging
import os

import pytest

from experiments import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _record(level, *path):
  return logging.LogRecord('x', level, os.path.join(ROOT, *path), 1, 'message', None, None)


@pytest.mark.parametrize('path, level, kept', [
    (('bigmodel_jax', 'train', 'loop.py'), logging.INFO, True),
    (('experiments', 'train.py'), logging.INFO, True),
    # A virtual environment inside the checkout, as the README's setup makes it.
    (('.venv', 'lib', 'python3.11', 'site-packages', 'orbax', 'checkpoint', 'x.py'),
     logging.INFO, False),
    (('.venv', 'lib', 'python3.11', 'site-packages', 'orbax', 'checkpoint', 'x.py'),
     logging.WARNING, True),
])
def test_info_lines_only_from_the_project_warnings_from_everyone(path, level, kept):
  assert cli._OnlyOwnInfo().filter(_record(level, *path)) is kept
