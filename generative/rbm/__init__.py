"""Restricted Boltzmann machines (CD-k, persistent CD) and deep belief networks."""

from generative.rbm.dbn import DBN
from generative.rbm.layer import RBMLayer
from generative.rbm.module import RBM

__all__ = ["DBN", "RBM", "RBMLayer"]
