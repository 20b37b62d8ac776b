"""Benchmarks: commands that print speed figures; no test times anything.

Run one with `python -m experiments.benchmarks.<name>`.
"""
