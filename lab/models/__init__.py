"""LightningModules for supervised learning: classifiers, regressors, multi-task and sequence-to-sequence models.

Models trained by a discriminative objective alone live here; a model whose objective is generative (the DBN, the
HMMs), with the classifier built on it, lives in generative/ (the rule is stated in generative/__init__.py)."""

from lab.models.classifier import Classifier
from lab.models.multitask import MultiTask
from lab.models.regressor import Regressor
from lab.models.seq2seq import Seq2Seq

__all__ = ["Classifier", "MultiTask", "Regressor", "Seq2Seq"]
