"""Federated learning in simulation (FedAvg, FedProx, client-level DP), above the trainer: its
rounds run through the trainer's one loop and hooks."""
