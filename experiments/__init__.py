"""Entry points a researcher runs: train, evaluate, generate. Each is a thin absl app."""
