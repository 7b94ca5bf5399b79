"""The Conv-4 embedding network shared by every algorithm (ProtoNet's embedding, the body of
MAML, Meta-SGD and ANIL).

Four blocks of 3x3 convolution (64 filters by default), BatchNorm, ReLU and 2x2 max-pooling,
then the final map flattened: 64 features from Omniglot's 28x28 (a 1x1 map), 1600 from
mini-ImageNet's 84x84 (5x5x64), as the papers' networks. The blocks are those of learn2learn's
``ConvBase`` (same layers, parameter names, initialisation and order of random draws, so
checkpoints and seeded runs are unchanged; ``tests/test_backbone.py`` holds them equal), written
out here because importing learn2learn costs seconds that ``fewshot predict`` should not pay.
The ``strided`` variant replaces pooling by stride-2 convolutions and averages the final map, as
the MAML paper's Omniglot network does.
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


def final_side(size: int, variant: str = "conv4") -> int:
    """Side of the last feature map for ``size``-pixel images (each block halves it).

    Example:
        >>> final_side(28), final_side(84), final_side(28, "conv4-strided")
        (1, 5, 2)
    """
    for _ in range(4):
        size = size // 2 if variant == "conv4" else (size + 1) // 2
    return max(size, 1)


def feature_dim(variant: str = "conv4", filters: int = EMBEDDING_DIM, size: int = 28) -> int:
    """Features of ``Conv4(variant, filters=filters, size=size)``: the flattened map of
    ``conv4``, the channels of ``conv4-strided`` (averaged map).

    Example:
        >>> feature_dim(), feature_dim("conv4", 32, 84), feature_dim("conv4-strided", 64, 84)
        (64, 800, 64)
    """
    return filters * final_side(size) ** 2 if variant == "conv4" else filters


class Conv4(torch.nn.Module):
    """Conv-4 embedding: ``[B, C, S, S]`` images to ``[B, feature_dim(variant, filters, S)]``.

    Args:
        variant: ``conv4`` (max-pooling, map flattened) or ``conv4-strided`` (stride-2
            convolutions, map averaged).
        channels: input channels (1 grayscale, 3 RGB).
        filters: filters of every convolution.
        size: input side in pixels (sets the flattened features).

    Example:
        >>> Conv4()(torch.zeros(2, 1, 28, 28)).shape, Conv4(channels=3, size=84)(torch.zeros(2, 3, 84, 84)).shape
        (torch.Size([2, 64]), torch.Size([2, 1600]))
    """

    def __init__(
        self,
        variant: str = "conv4",
        channels: int = 1,
        filters: int = EMBEDDING_DIM,
        size: int = 28,
    ):
        super().__init__()
        if variant not in BACKBONES:
            raise ValueError(f"unknown backbone {variant!r}; choose from {BACKBONES}")
        self.pool = variant == "conv4"
        self.features = torch.nn.Sequential(
            ConvBlock(channels, filters, self.pool),
            *(ConvBlock(filters, filters, self.pool) for _ in range(3)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return x.flatten(1) if self.pool else x.mean(dim=(2, 3))
