"""Supervised backbones: plain nn.Modules mapping inputs to feature vectors of size `out_features`."""

from lab.backbones.cnn import CNN, LeNet
from lab.backbones.mlp import MLP
from lab.backbones.resnet import ResNet
from lab.backbones.rnn import RNN
from lab.backbones.transformer import Transformer

__all__ = ["MLP", "CNN", "LeNet", "ResNet", "RNN", "Transformer"]
