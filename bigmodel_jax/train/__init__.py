"""Training: state, optimizers, losses, metrics, pure step functions, checkpoints and the loop."""
