"""Variational autoencoders: MLP (784-400-20) and convolutional, Bernoulli or Gaussian likelihood."""

from generative.vae.module import VAE

__all__ = ["VAE"]
