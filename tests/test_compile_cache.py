"""The compilation cache directory is private, and a second process loads what the first compiled."""

import os
import stat
import subprocess
import sys

import pytest

from bigmodel_jax import compile_cache
from bigmodel_jax.errors import UserInputError


def _mode(path) -> int:
  return stat.S_IMODE(os.stat(path).st_mode)


def test_the_directory_from_the_environment(monkeypatch):
  monkeypatch.setenv('HOME', '/home/ada')
  assert compile_cache.dir_from_environment({}) == '/home/ada/.cache/bigmodel_jax/jax'
  assert compile_cache.dir_from_environment({'XDG_CACHE_HOME': '/xdg'}) == '/xdg/bigmodel_jax/jax'
  assert compile_cache.dir_from_environment(
      {'XDG_CACHE_HOME': '/xdg', 'BIGMODEL_COMPILATION_CACHE': '/fast/cache'}) == '/fast/cache'
  assert compile_cache.dir_from_environment({'BIGMODEL_COMPILATION_CACHE': 'off'}) is None


def test_created_private_whatever_the_umask(tmp_path):
  old = os.umask(0)
  try:
    compile_cache.make_private_dir(str(tmp_path / 'a' / 'jax'))
  finally:
    os.umask(old)
  assert _mode(tmp_path / 'a' / 'jax') == 0o700


def test_a_writable_existing_directory_is_made_private(tmp_path):
  path = tmp_path / 'jax'
  path.mkdir()
  path.chmod(0o777)
  compile_cache.make_private_dir(str(path))
  assert _mode(path) == 0o700


def test_refuses_what_is_not_a_usable_directory(tmp_path):
  (tmp_path / 'file').write_text('')
  with pytest.raises(UserInputError, match=r'file: cannot be created \(File exists\)'):
    compile_cache.make_private_dir(str(tmp_path / 'file'))
  with pytest.raises(UserInputError, match=r'cannot be created \(Not a directory\); set '
                                           'BIGMODEL_COMPILATION_CACHE to a writable directory'):
    compile_cache.make_private_dir(str(tmp_path / 'file' / 'jax'))


def test_refuses_a_directory_of_another_user(tmp_path, monkeypatch):
  monkeypatch.setattr(os, 'getuid', lambda: os.stat(tmp_path).st_uid + 1)
  with pytest.raises(UserInputError, match='belongs to another user'):
    compile_cache.make_private_dir(str(tmp_path))


_COMPILE_ONCE = """
import sys
import jax
from bigmodel_jax import compile_cache
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kwargs: hits.append(event) if event.endswith('/cache_hits') else None)
compile_cache.enable(sys.argv[1])
print(jax.jit(lambda x: x * 2 + 1)(jax.numpy.arange(3.0)).tolist(), len(hits))
"""


def test_a_second_process_loads_the_compiled_program(tmp_path):
  def run() -> str:
    result = subprocess.run([sys.executable, '-c', _COMPILE_ONCE, str(tmp_path / 'cache')],
                            env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, capture_output=True,
                            text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()[-1]

  assert run() == '0'
  assert os.listdir(tmp_path / 'cache')
  assert int(run()) > 0
