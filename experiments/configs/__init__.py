"""Run configs: one file per model (`--model=NAME` loads NAME.py), each a `get_config()`."""
