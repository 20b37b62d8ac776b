"""Draw the pictures of a trained run: `python -m experiments.plot --workdir=runs/cnn [--text=...]`.

Writes PNGs to WORKDIR/plots/ (training also writes them when it ends): training and validation
curves; for classifiers a confusion matrix; for image models a grid of validation images with
true and predicted labels; for transformers the attention weights of each head for --text
(default: the start of the first test example).
"""

from absl import flags

from experiments import cli
from experiments import plotting

_WORKDIR = flags.DEFINE_string('workdir', 'runs/transformer', 'Run directory of a trained model.')
_TEXT = flags.DEFINE_string('text', None, 'Transformers: the text whose attention is drawn.')
_NUM_IMAGES = flags.DEFINE_integer('num_images', 25, 'Image models: validation images in the grid.',
                                   lower_bound=1)


def main(argv):
  del argv
  for path in plotting.write_plots(_WORKDIR.value, text=_TEXT.value, num_images=_NUM_IMAGES.value):
    print(path)


if __name__ == '__main__':
  cli.run(main)
