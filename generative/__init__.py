"""Generative models (VAE and GAN families) and their sample-quality metrics."""
