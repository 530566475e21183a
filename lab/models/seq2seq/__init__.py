"""Sequence to sequence: RNN encoder-decoders with attention, and the Transformer."""

from lab.models.seq2seq.module import Seq2Seq
from lab.models.seq2seq.rnn import RNNSeq2Seq
from lab.models.seq2seq.transformer import TransformerSeq2Seq

__all__ = ["RNNSeq2Seq", "Seq2Seq", "TransformerSeq2Seq"]
