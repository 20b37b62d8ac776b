"""Benchmark commands: they print numbers; no test times anything."""
