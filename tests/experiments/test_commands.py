"""Each command end to end as a subprocess, as a researcher runs it, and its bad-input errors."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, error_line, run_command as run

TINY_LM = ['--config.model.num_layers=1', '--config.model.d_model=32', '--config.model.num_heads=2',
           '--config.data.seq_len=32', '--config.batch_size=8', '--config.eval_batches=2',
           '--config.log_every=2', '--config.sample.num_tokens=40']


@pytest.fixture(scope='module')
def lm_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('lm'))
  result = run('train', '--model=transformer', f'--workdir={workdir}', '--config.num_steps=4',
               *TINY_LM)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Sample:' in result.stdout
  return workdir


def test_train_transformer_resumes_and_reports_cost(lm_workdir):
  summary = json.load(open(os.path.join(lm_workdir, 'summary.json')))
  assert summary['cost']['step'] == 4 and summary['cost']['params'] > 0
  assert summary['cost']['flops_per_step'] > 0
  again = run('train', '--model=transformer', f'--workdir={lm_workdir}', '--config.num_steps=6',
              *TINY_LM)
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'Resuming from' in again.stderr
  assert json.load(open(os.path.join(lm_workdir, 'summary.json')))['cost']['step'] == 6


def test_generate_from_trained_lm(lm_workdir):
  result = run('generate', f'--workdir={lm_workdir}', '--prompt=ROMEO:', '--num_tokens=30',
               '--num_samples=2', '--top_k=5')
  assert result.returncode == 0, result.stderr[-3000:]
  samples = result.stdout.rstrip('\n').split('\n----------\n')
  assert len(samples) == 2 and all(s.startswith('ROMEO:') for s in samples)
  assert all(len(s) == len('ROMEO:') + 30 for s in samples)


@pytest.mark.parametrize('prompt, message', [
    ('', "error: --prompt='': must not be empty (use a newline to start from scratch)"),
    ('ROMEO \u2603', "error: --prompt='ROMEO \u2603': text has 1 character(s) outside the char "
                      "tokenizer vocabulary: '\u2603'"),
])
def test_generate_names_the_prompt_it_cannot_encode(lm_workdir, prompt, message):
  assert error_line(run('generate', f'--workdir={lm_workdir}', f'--prompt={prompt}')).startswith(
      message)


def test_evaluate_trained_lm(lm_workdir):
  result = run('evaluate', f'--workdir={lm_workdir}', '--batch_size=512')
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report['split'] == 'test' and report['metrics']['perplexity'] > 1


@pytest.mark.parametrize('model,extra', [
    ('mlp', ()), ('cnn', ()),
    # Small: the final evaluation reads the whole 7,391-passage test split.
    ('transformer_classifier', ('--config.model.num_layers=1', '--config.model.d_model=32'))])
def test_train_other_models_for_a_few_steps(tmp_path, model, extra):
  result = run('train', f'--model={model}', f'--workdir={tmp_path}', '--config.num_steps=3',
               '--config.log_every=1', '--config.eval_batches=1', *extra)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout)
  assert 0.0 <= summary['validation']['accuracy'] <= 1.0


def test_train_regression_from_csv(tmp_path):
  csv = tmp_path / 'houses.csv'
  lines = ['rooms,area,price'] + [f'{i % 7},{50 + i},{100 + 3 * i}' for i in range(200)]
  csv.write_text('\n'.join(lines) + '\n')
  result = run('train', '--model=mlp', f'--dataset=csv:{csv}', '--config.data.target=price',
               f'--workdir={tmp_path / "run"}', '--config.num_steps=3', '--config.eval_batches=1')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'r2' in json.loads(result.stdout)['validation']


@pytest.mark.parametrize('args,message', [
    (['--model=resnet'], "--model='resnet' is unknown; choose one of: cnn, lstm, mlp"),
    (['--model=mlp', '--dataset=imagenet'], 'imagenet'),
    (['--model=mlp', '--dataset=csv:/nonexistent/data.csv'], '/nonexistent/data.csv'),
    (['--model=mlp', '--dataset=csv:{csv}', '--config.data.target=price'], 'price'),
    (['--model=mlp', '--config.batch_size=0'], 'config.batch_size must be a positive integer'),
    (['--model=mlp', '--config.optimizer.learning_rate=-0.1'], 'config.optimizer.learning_rate'),
    (['--model=mlp', '--config.no_such_field=1'], 'no_such_field'),
    (['--model=mlp', '--config.num_steps=ten'], 'num_steps'),
    (['--model=mlp', '--no_such_flag=1'], 'no_such_flag'),
    (['--model=mlp', '--config.batch_size=abc'], "--config.batch_size=abc: invalid literal for int()"),
    (['--model=mlp', '--config.skip_nonfinite_updates=maybe'], 'skip_nonfinite_updates=maybe'),
    (['--model=mlp', '--config.data.test_fraction=1.5'],
     'config.data.test_fraction must be a number strictly between 0 and 1, got 1.5'),
    (['--model=mlp', 'now'], 'unexpected arguments: now'),
    (['--config={tmp}/missing_config.py'], 'missing_config.py: cannot be loaded: [Errno 2]'),
    # A config file is Python: whatever running it raises is one line.
    (['--config={tmp}/syntax.py'], 'syntax.py: cannot be loaded: SyntaxError: invalid syntax '
     '(syntax.py, line 1)'),
    (['--config={tmp}/a.txt'], 'a.txt: cannot be loaded: SyntaxError'),
    (['--config={tmp}/no_get.py'], 'no_get.py: cannot be loaded: it defines no get_config()'),
    (['--config={tmp}/imports.py'], "imports.py: cannot be loaded: ModuleNotFoundError: No "
     "module named 'no_such_module'"),
    (['--config={tmp}/raises.py'], 'raises.py: cannot be loaded: NameError: name '
     "'undefined' is not defined"),
    (['--config={tmp}/empty_error.py'], 'empty_error.py: cannot be loaded: RuntimeError'),
    (['--model=mlp', '--dataset=csv:{tmp}', '--config.data.target=y'], 'cannot be read: Is a directory'),
    (['--model=mlp', '--dataset=csv:{tmp}/latin1.csv', '--config.data.target=y'],
     'cannot be read as a UTF-8 CSV file'),
    (['--model=mlp', '--dataset=csv:{tmp}/holes.csv', '--config.data.target=y'],
     "column 'empty' of"),
    (['--model=mlp', '--dataset=csv:{tmp}/nans.csv', '--config.data.target=y'],
     "column 'nans' of"),
    (['--model=transformer', '--dataset=textfile:{tmp}/short.txt'],
     'the train split has 7 tokens (7 characters), but config.data.seq_len=128 needs at least 129'),
    # a.txt has no newline, the default prompt: refused before training, not after it.
    (['--model=transformer', '--dataset=textfile:{tmp}/a.txt', '--config.data.seq_len=8'],
     "config.sample.prompt='\\n': text has 1 character(s) outside the char tokenizer vocabulary"),
    (['--model=mlp', '--dataset=mnist', '--config.data.data_dir={tmp}'],
     'is not prepared in'),
    (['--model=transformer_multitask', '--config.tasks.genre.dataset=plays'],
     "config.tasks.genre.dataset='plays' is not known; choose one of: digits"),
    (['--model=transformer_multitask', '--config.tasks.genre.head=lm'],
     "config.tasks.genre.head='lm' does not fit dataset 'shakespeare_genre' (classification)"),
    (['--model=transformer_multitask', '--config.tasks.lm.dataset=textfile:{tmp}/a.txt',
      '--config.tasks.genre.dataset=textfile:{tmp}/b.txt', '--config.tasks.genre.head=lm',
      '--config.data.tokenizer=word', '--config.data.seq_len=4'],
     "config.data.tokenizer='word': the tasks' datasets learn different vocabularies"),
    (['--model=transformer_multitask', '--dataset=shakespeare'],
     "config.data.name='shakespeare': a multi-task run reads the datasets of config.tasks"),
])
def test_bad_input_exits_2_with_one_line_and_no_workdir(tmp_path, args, message):
  csv = tmp_path / 'data.csv'
  csv.write_text('a,b\n1,2\n3,4\n')
  rows = [f'{i},{i * 2}' for i in range(20)]
  (tmp_path / 'holes.csv').write_text('x,empty,y\n' + '\n'.join(f'{r.split(",")[0]},,{r.split(",")[1]}' for r in rows))
  (tmp_path / 'nans.csv').write_text('x,nans,y\n' + '\n'.join(r.replace(',', ',nan,') for r in rows))
  (tmp_path / 'latin1.csv').write_bytes('x,y\n1,\xe9\n'.encode('latin-1'))
  (tmp_path / 'short.txt').write_text('short txt')
  (tmp_path / 'a.txt').write_text('to be or not to be, ' * 20)
  (tmp_path / 'b.txt').write_text('all the world is a stage. ' * 20)
  (tmp_path / 'syntax.py').write_text('def get_config(:\n  pass\n')
  (tmp_path / 'no_get.py').write_text('CONFIG = 1\n')
  (tmp_path / 'imports.py').write_text('import no_such_module\n')
  (tmp_path / 'raises.py').write_text('def get_config():\n  return undefined\n')
  (tmp_path / 'empty_error.py').write_text('raise RuntimeError\n')
  workdir = tmp_path / 'run'
  args = [a.replace('{csv}', str(csv)).replace('{tmp}', str(tmp_path)) for a in args]
  result = run('train', *args, f'--workdir={workdir}')
  assert result.returncode == 2, (result.stdout, result.stderr[-3000:])
  error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(error_lines) == 1 and message in error_lines[0], result.stderr[-3000:]
  assert not workdir.exists()


def test_multitask_train_and_evaluate_report_each_task(tmp_path):
  result = run('train', '--model=transformer_multitask', f'--workdir={tmp_path}',
               '--config.num_steps=3', *TINY_LM[:-1])
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(result.stdout)
  assert {'loss', 'lm/bits_per_char', 'genre/accuracy'} <= set(summary['validation'])
  assert set(summary['test']['examples']) == {'lm', 'genre'}
  result = run('evaluate', f'--workdir={tmp_path}', '--split=validation')
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout)
  assert report['dataset'] == 'multitask' and set(report['examples']) == {'lm', 'genre'}
  for task in ('lm', 'genre'):
    assert report['metrics'][f'{task}/loss'] > 0
  # The commands written for one output refuse it in one line.
  for command in (['generate'], ['predict', '--text=To be'], ['export', f'--output={tmp_path}/x'],
                  ['compress', '--method=quantize', f'--output={tmp_path}/q']):
    assert error_line(run(command[0], f'--workdir={tmp_path}', *command[1:])) == (
        f'error: --workdir={tmp_path}: is a multi-task run (tasks genre, lm); this command works '
        'on runs of one task (python -m experiments.evaluate reports each task)')


def test_generate_on_missing_workdir_exits_2(tmp_path):
  result = run('generate', f'--workdir={tmp_path / "nothing"}')
  assert result.returncode == 2
  assert 'holds no training run' in result.stderr


def test_second_run_on_a_workdir_in_use_exits_2_naming_the_other_process(tmp_path):
  hold = ('import sys, time\nfrom bigmodel_jax.run.lock import WorkdirLock\n'
          'with WorkdirLock(sys.argv[1]):\n  print("locked", flush=True)\n  time.sleep(120)\n')
  holder = subprocess.Popen([sys.executable, '-c', hold, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    result = run('train', '--model=mlp', f'--workdir={tmp_path}', '--config.num_steps=3')
  finally:
    holder.kill()
    holder.wait()
  assert result.returncode == 2, result.stderr[-3000:]
  assert f'error: --workdir={tmp_path}: is in use by process {holder.pid} on ' in result.stderr
  assert os.listdir(tmp_path) == ['.lock']  # nothing written by the refused run


def test_diverging_run_exits_1_naming_the_step_and_last_good_checkpoint(tmp_path):
  result = run('train', '--model=mlp', '--dataset=regression', '--config.optimizer.name=sgd',
               '--config.optimizer.learning_rate=1e6', '--config.optimizer.grad_clip_norm=0',
               '--config.optimizer.warmup_steps=0', '--config.num_steps=50',
               '--config.checkpoint_every=1', f'--workdir={tmp_path}')
  assert result.returncode == 1, result.stderr[-3000:]
  last_line = result.stderr.strip().splitlines()[-1]
  match = re.fullmatch(r'error: the loss or a gradient was NaN or infinite at step (\d+); the run '
                       r'stopped\. Last good checkpoint: (\S+) \(step (\d+)\)\. .*', last_line)
  assert match, last_line
  bad, good = int(match[1]), int(match[3])
  assert good == bad - 1 and match[2] == str(tmp_path / 'checkpoints' / str(good))
  assert max(map(int, os.listdir(tmp_path / 'checkpoints'))) == good


@pytest.mark.parametrize('module, flag', [
    ('train', 'workdir'), ('federated', 'workdir'), ('sweep', 'sweepdir')])
def test_a_run_folder_that_is_a_file_or_read_only_is_one_line(tmp_path, module, flag):
  """Checked at the door: they were FileExistsError and PermissionError tracebacks."""
  (tmp_path / 'file').write_text('x')
  extra = {'train': ['--model=mlp'], 'federated': [],
           'sweep': ['--model=mlp', '--space=x.py', '--trials=1']}[module]
  for folder, message in ((tmp_path / 'file', 'exists and is not a folder'),
                          ('/sys/run', 'cannot be written (')):
    line = error_line(run(module, *extra, f'--{flag}={folder}'))
    assert line.startswith(f'error: --{flag}={folder}: {message}'), line
  assert os.listdir(tmp_path) == ['file']
