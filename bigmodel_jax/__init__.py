"""bigmodel_jax: pure-function Flax models, Optax training and Orbax checkpoints in one small codebase."""
