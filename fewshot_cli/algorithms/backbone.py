"""The Conv-4 embedding network shared by every algorithm (ProtoNet's embedding, the body of
MAML, Meta-SGD and ANIL).

Four blocks of 3x3 convolution (64 filters), BatchNorm, ReLU and 2x2 max-pooling turn a 28x28
image into a 64-dimensional embedding (28 -> 14 -> 7 -> 3 -> 1). The blocks are those of
learn2learn's ``ConvBase`` (same layers, parameter names, initialisation and order of random
draws, so checkpoints and seeded runs are unchanged; ``tests/test_backbone.py`` holds them
equal), written out here because importing learn2learn costs seconds (gym, scipy, torchvision's
models) that ``fewshot predict`` with a ProtoNet should not pay. The ``strided`` variant replaces
pooling by stride-2 convolutions and averages the final 2x2 map, as the MAML paper's Omniglot
network does.
"""

from __future__ import annotations

import torch

from fewshot_cli.choices import BACKBONES

EMBEDDING_DIM = 64


class ConvBlock(torch.nn.Module):
    """learn2learn's ``ConvBlock``: convolution, BatchNorm, ReLU, then 2x2 max-pooling (or a
    stride-2 convolution without pooling).

    Args:
        in_channels, out_channels: channels of the convolution.
        max_pool: pool after the block (else the convolution has stride 2).

    Example:
        >>> ConvBlock(1, 8)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 8, 14, 14])
    """

    def __init__(self, in_channels: int, out_channels: int, max_pool: bool = True):
        super().__init__()
        self.max_pool = torch.nn.MaxPool2d(kernel_size=2, stride=2) if max_pool else None
        self.normalize = torch.nn.BatchNorm2d(out_channels, affine=True)
        torch.nn.init.uniform_(self.normalize.weight)
        self.relu = torch.nn.ReLU()
        self.conv = torch.nn.Conv2d(
            in_channels, out_channels, 3, stride=1 if max_pool else 2, padding=1, bias=True
        )
        torch.nn.init.xavier_uniform_(self.conv.weight, gain=1.0)
        torch.nn.init.constant_(self.conv.bias, 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.normalize(self.conv(x)))
        return x if self.max_pool is None else self.max_pool(x)


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
        pool = variant == "conv4"
        self.features = torch.nn.Sequential(
            ConvBlock(1, EMBEDDING_DIM, pool),
            *(ConvBlock(EMBEDDING_DIM, EMBEDDING_DIM, pool) for _ in range(3)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))
