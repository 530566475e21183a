"""LightningModules for supervised learning: classifiers and sequence-to-sequence models."""

from lab.models.classifier import Classifier
from lab.models.seq2seq import Seq2Seq

__all__ = ["Classifier", "Seq2Seq"]
