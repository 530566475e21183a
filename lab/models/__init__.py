"""LightningModules for supervised learning."""

from lab.models.classifier import Classifier

__all__ = ["Classifier"]
