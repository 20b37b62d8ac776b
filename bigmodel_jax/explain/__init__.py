"""Explanations: gradient attributions (images, texts), Shapley values and LIME (features)."""
