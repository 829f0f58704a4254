"""Experiments of the autoencoder / VAE family (filled in below)."""
