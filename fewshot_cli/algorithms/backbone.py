"""The Conv-4 embedding network shared by MAML and ProtoNet.

Four blocks of 3x3 convolution (64 filters), BatchNorm, ReLU and 2x2 max-pooling turn a 28x28
image into a 64-dimensional embedding (28 -> 14 -> 7 -> 3 -> 1). The blocks are learn2learn's
``ConvBase``; the ``strided`` variant replaces pooling by stride-2 convolutions and averages the
final 2x2 map, as the MAML paper's Omniglot network does.
"""

from __future__ import annotations

import torch
from learn2learn.vision.models import ConvBase

BACKBONES = ("conv4", "conv4-strided")
EMBEDDING_DIM = 64


class Conv4(torch.nn.Module):
    """Conv-4 embedding: ``[B, 1, 28, 28]`` images to ``[B, 64]`` features.

    Args:
        variant: ``conv4`` (max-pooling) or ``conv4-strided`` (stride-2 convolutions).

    Example:
        >>> Conv4()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 64])
    """

    def __init__(self, variant: str = "conv4"):
        super().__init__()
        if variant not in BACKBONES:
            raise ValueError(f"unknown backbone {variant!r}; choose from {BACKBONES}")
        self.features = ConvBase(hidden=EMBEDDING_DIM, channels=1, layers=4,
                                 max_pool=variant == "conv4")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))
