"""LightningModules for supervised learning: classifiers, multi-task models and sequence-to-sequence models."""

from lab.models.classifier import Classifier
from lab.models.multitask import MultiTask
from lab.models.regressor import Regressor
from lab.models.seq2seq import Seq2Seq

__all__ = ["Classifier", "MultiTask", "Regressor", "Seq2Seq"]
