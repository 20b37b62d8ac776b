"""Robustness: adversarial attacks (FGSM, PGD), robust accuracy, adversarial training."""
