"""Datasets: DataModules, and `python -m lab.data fetch` to put raw files on disk."""

from lab.data.vision import FashionMNISTDataModule, MNISTDataModule, SeqMNISTDataModule

__all__ = ["MNISTDataModule", "FashionMNISTDataModule", "SeqMNISTDataModule"]
