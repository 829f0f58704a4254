"""Shared math below every family: densities and KL divergences, bits/dim, image-quality metrics,
camera geometry, padding and masks. Each function names its source and is tested against an oracle."""
