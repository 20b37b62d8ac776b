"""Explanations: gradient attributions for images and texts, Shapley values and LIME for features."""
