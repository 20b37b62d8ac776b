"""Pictures of a run: training curves, validation images with predictions, confusion, attention.

Each function returns a matplotlib `Figure` built without pyplot (no global state, no display
needed); `save` writes it as PNG.
"""

from etils import epath
from matplotlib.figure import Figure

DPI = 100


def save(figure: Figure, path: str) -> str:
  """Writes `figure` to `path` as PNG; returns the path."""
  with epath.Path(path).open('wb') as f:
    figure.savefig(f, dpi=DPI, format='png')
  return path
