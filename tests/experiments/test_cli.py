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


def _folder_error(capsys, path) -> str | None:
  """The error line check_writable_folder prints for `path`, None when it accepts it."""
  try:
    cli.check_writable_folder('workdir', str(path))
  except SystemExit as e:
    assert e.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line
  return None


def test_a_folder_that_cannot_be_written_is_one_line_and_nothing_is_left(tmp_path, capsys):
  (tmp_path / 'file').write_text('x')
  (tmp_path / 'run').mkdir()
  (tmp_path / 'run' / 'config.json').write_text('{}')
  os.symlink(tmp_path / 'file', tmp_path / 'link_to_file')
  os.symlink(tmp_path / 'absent', tmp_path / 'dangling')
  os.mkfifo(tmp_path / 'fifo')
  before = sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path / 'run'))
  refused = {
      'file': f'error: --workdir={tmp_path}/file: exists and is not a folder',
      'file/run': f'error: --workdir={tmp_path}/file/run: {tmp_path}/file is not a folder',
      'file/a/b/c': f'error: --workdir={tmp_path}/file/a/b/c: {tmp_path}/file is not a folder',
      'link_to_file': f'error: --workdir={tmp_path}/link_to_file: exists and is not a folder',
      'dangling': f'error: --workdir={tmp_path}/dangling: exists and is not a folder',
      'fifo': f'error: --workdir={tmp_path}/fifo: exists and is not a folder',
      'run/config.json': f'error: --workdir={tmp_path}/run/config.json: exists and is not a '
                         'folder',
  }
  for name, line in refused.items():
    assert _folder_error(capsys, tmp_path / name) == line, name
  for name in ('run', 'new', 'new/deeper/still', '.'):
    assert _folder_error(capsys, tmp_path / name) is None, name
  assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path / 'run'))) == before
  # sysfs makes no folders, for root either (who passes every permission bit).
  if os.path.isdir('/sys'):
    assert _folder_error(capsys, '/sys/run').startswith('error: --workdir=/sys/run: cannot be '
                                                        'written (')
