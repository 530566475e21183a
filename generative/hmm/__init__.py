"""Hidden Markov models: forward algorithm, Viterbi and sampling, fitted by gradient ascent."""

from generative.hmm.module import HMM

__all__ = ["HMM"]
