"""DP-SGD beside the step it changes: per-example clipping and noise (dp_sgd), Poisson-sampled
batches (sampling), the RDP accountant (accounting), the plan built from config.dp (budget) and
the loop's hook that reports epsilon (hooks)."""
