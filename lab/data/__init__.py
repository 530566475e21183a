"""Datasets: DataModules, and `python -m lab.data fetch` to put raw files on disk."""

from lab.data.base import ImageDataModule, data_dims
from lab.data.folder import ImageFolderDataModule, TorchvisionDataModule
from lab.data.multitask import MultiTaskDataModule
from lab.data.seq2seq import Seq2SeqDataModule
from lab.data.tabular import TabularDataModule
from lab.data.vision import FashionMNISTDataModule, MNISTDataModule, SeqMNISTDataModule

__all__ = ["FashionMNISTDataModule", "ImageDataModule", "ImageFolderDataModule", "MNISTDataModule",
           "MultiTaskDataModule", "Seq2SeqDataModule", "SeqMNISTDataModule", "TabularDataModule", "TorchvisionDataModule",
           "data_dims"]
