"""When a command re-executes itself with a faster malloc, and that it really runs with it."""

import os
import subprocess
import sys

import pytest

from experiments import allocator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TCMALLOC = '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4'


def _preload(environ=None, platform='linux', loaded='', found=TCMALLOC):
  return allocator.preload_value(environ or {}, platform, loaded, lambda: found)


def test_preloads_the_found_library_by_default():
  assert _preload() == TCMALLOC
  assert _preload({'BIGMODEL_ALLOCATOR': 'auto'}) == TCMALLOC


def test_keeps_what_the_user_preloads_first():
  assert _preload({'LD_PRELOAD': '/opt/libfoo.so'}) == f'/opt/libfoo.so:{TCMALLOC}'


@pytest.mark.parametrize('environ,platform,loaded,found', [
    ({'BIGMODEL_ALLOCATOR': 'system'}, 'linux', '', TCMALLOC),          # the opt-out
    ({'BIGMODEL_ALLOCATOR_PRELOADED': TCMALLOC}, 'linux', '', TCMALLOC),  # never twice
    ({'LD_PRELOAD': '/usr/lib/libjemalloc.so.2'}, 'linux', '', TCMALLOC),  # the user's allocator
    ({}, 'linux', '7f00-7f01 r-xp 0 08:01 5 /usr/lib/libmimalloc.so.2\n', TCMALLOC),  # loaded
    ({}, 'darwin', '', TCMALLOC),
    ({}, 'win32', '', TCMALLOC),
    ({}, 'linux', '', None),                                          # nothing installed
])
def test_goes_on_as_is(environ, platform, loaded, found):
  assert _preload(environ, platform, loaded, found) is None


def test_an_explicit_path(tmp_path):
  library = tmp_path / 'libmymalloc.so'
  library.write_bytes(b'')
  assert _preload({'BIGMODEL_ALLOCATOR': str(library)}, found=None) == str(library)
  with pytest.raises(ValueError, match="BIGMODEL_ALLOCATOR='/nonexistent.so': no such file; use "
                                       'auto, system or the path of a malloc library'):
    _preload({'BIGMODEL_ALLOCATOR': '/nonexistent.so'})


def test_finds_tcmalloc_before_the_mimalloc_wheel(tmp_path):
  lib_dir, site_dir = tmp_path / 'lib', tmp_path / 'site-packages'
  mimalloc = site_dir / allocator.MIMALLOC_IN_SITE_PACKAGES
  mimalloc.parent.mkdir(parents=True)
  mimalloc.write_bytes(b'')
  assert allocator.find_allocator([str(lib_dir)], [str(site_dir)]) == str(mimalloc)
  lib_dir.mkdir()
  (lib_dir / 'libtcmalloc_minimal.so.4').write_bytes(b'')
  assert allocator.find_allocator([str(lib_dir)], [str(site_dir)]) == str(
      lib_dir / 'libtcmalloc_minimal.so.4')
  assert allocator.find_allocator([str(tmp_path / 'none')], [str(tmp_path / 'none')]) is None


@pytest.mark.parametrize('argv,expected', [
    (['python', '-m', 'experiments.train', '--model=cnn'], True),
    (['/venv/bin/python', '-X', 'importtime', '-m', 'experiments.benchmarks.train'], True),
    (['python', '-m', 'pytest', '-q'], False),
    (['python', 'script.py', '-m', 'experiments.train'], False),
    (['python', '-c', 'import experiments'], False),
    (['python', '-W', 'error', '-m', 'experiments.train'], True),
    (['python', '-m'], False),
])
def test_only_commands_reexecute(argv, expected):
  assert allocator.started_as_command(argv) is expected


def _benchmark_header(choice: str) -> subprocess.CompletedProcess:
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'BIGMODEL_ALLOCATOR': choice}
  env.pop('LD_PRELOAD', None)
  env.pop(allocator.REEXECUTED_VAR, None)
  return subprocess.run(
      [sys.executable, '-m', 'experiments.benchmarks.train', '--models=mlp', '--strategies=single',
       '--steps=1', '--warmup=0'], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(allocator.find_allocator() is None,
                    reason='no tcmalloc (apt libtcmalloc-minimal4) nor cmeel-mimalloc installed')
def test_a_command_runs_with_the_found_library():
  result = _benchmark_header('auto')
  assert result.returncode == 0, result.stderr[-3000:]
  library = os.path.realpath(allocator.find_allocator())  # /proc/self/maps names the file
  assert result.stdout.splitlines()[0].endswith(f'malloc: {library}')


def test_a_bad_choice_stops_the_command_with_one_line():
  result = _benchmark_header('/nonexistent.so')
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      "error: BIGMODEL_ALLOCATOR='/nonexistent.so': no such file; use auto, system or the path of "
      'a malloc library (e.g. /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)']


def test_a_library_reached_twice_is_listed_once(tmp_path):
  (tmp_path / 'lib').mkdir()
  (tmp_path / 'lib' / 'libtcmalloc_minimal.so.4').write_bytes(b'')
  (tmp_path / 'lib64').symlink_to(tmp_path / 'lib')
  assert allocator.installed_allocators([str(tmp_path / 'lib'), str(tmp_path / 'lib64')], []) == [
      str(tmp_path / 'lib' / 'libtcmalloc_minimal.so.4')]
