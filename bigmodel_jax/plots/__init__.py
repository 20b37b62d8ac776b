"""Pictures of a run: training curves, validation images with predictions, confusion, attention.

Each function returns a matplotlib `Figure` built without pyplot (no global state, no display
needed); `save` writes it as PNG.
"""

from matplotlib.figure import Figure

DPI = 100


def save(figure: Figure, path: str) -> str:
  """Writes `figure` to `path` as PNG; returns the path."""
  figure.savefig(path, dpi=DPI, format='png')
  return path
