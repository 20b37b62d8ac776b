"""Entry points a researcher runs: train, evaluate, generate, predict, export, plot. Thin absl apps."""
