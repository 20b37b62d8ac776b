"""Every import of the library points down its layers (README, Architecture).

A package may import its own modules and those of lower layers, never one of its own layer or
above: models never import training code, data never imports models, and the feature packages
sit above the trainer and inference they use.
"""

import ast
import pathlib

from conftest import REPO

# Lowest first.
LAYERS = (
    ('errors', 'marks', 'paths'),
    ('data', 'cost', 'compile_cache', 'plots'),
    ('models', 'tasks'),
    ('config',),
    ('run', 'parallel'),
    ('train', 'infer'),
    ('compress', 'federated', 'robust', 'explain', 'search'),
)
LAYER = {package: level for level, packages in enumerate(LAYERS) for package in packages}
LIBRARY = pathlib.Path(REPO) / 'bigmodel_jax'


def _imports(path: pathlib.Path) -> set[str]:
  """The top-level packages of bigmodel_jax that `path` imports (also inside functions)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('bigmodel_jax'):
      parts = node.module.split('.')
      found.update([parts[1]] if len(parts) > 1 else [alias.name for alias in node.names])
    elif isinstance(node, ast.Import):
      found.update(a.name.split('.')[1] for a in node.names
                   if a.name.startswith('bigmodel_jax.'))
  return found


def test_every_package_has_a_layer():
  packages = {p.stem if p.is_file() else p.name for p in LIBRARY.iterdir()
              if (p.suffix == '.py' and p.stem != '__init__') or (p / '__init__.py').exists()}
  assert packages == set(LAYER)


def test_every_import_points_down():
  upward = []
  for path in LIBRARY.rglob('*.py'):
    relative = path.relative_to(LIBRARY)
    package = relative.parts[0].removesuffix('.py')
    if package == '__init__':
      continue
    for imported in _imports(path) - {package}:
      if LAYER[imported] >= LAYER[package]:
        upward.append(f'{relative} imports bigmodel_jax.{imported}')
  assert not upward, '\n'.join(sorted(upward))


def _module_file(name: str) -> pathlib.Path | None:
  path = pathlib.Path(REPO, *name.split('.'))
  for candidate in (path.with_suffix('.py'), path / '__init__.py'):
    if candidate.exists():
      return candidate
  return None


def _closure(module: str) -> set[str]:
  """Every module of the project that importing `module` imports, following the sources."""
  seen, todo = set(), [module]
  while todo:
    name = todo.pop()
    path = _module_file(name)
    if name in seen or path is None:
      continue
    seen.add(name)
    parts = name.split('.')
    for parent in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__
      todo.append('.'.join(parts[:parent]))
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        todo.append(node.module)
        todo.extend(f'{node.module}.{alias.name}' for alias in node.names)
      elif isinstance(node, ast.Import):
        todo.extend(alias.name for alias in node.names)
  return seen


def test_commands_that_use_a_trained_run_never_import_the_trainer():
  for command in ('evaluate', 'generate', 'predict', 'export', 'plot', 'serve', 'attack',
                  'explain'):
    trainer = {m for m in _closure(f'experiments.{command}')
               if m.startswith('bigmodel_jax.train.')
               and m.rsplit('.', 1)[1] in ('loop', 'hooks', 'optimizers', 'step')}
    assert not trainer, (command, trainer)
  assert 'bigmodel_jax.train.loop' in _closure('experiments.train')  # the check can fail
