"""Benchmarks: commands that print speed figures (`python -m experiments.benchmarks.<name>`); no test times anything."""
