"""Differential privacy (DP-SGD and its accounting) and federated averaging in simulation."""
