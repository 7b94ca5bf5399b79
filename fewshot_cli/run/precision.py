"""The float precision of a run's matrix products and convolutions on CUDA: ``fp32`` or ``tf32``.

``tf32`` lets cuBLAS (matrix products) and cuDNN (convolutions) use TensorFloat-32 on GPUs that
have it (a 10-bit mantissa inside the products, float32 everywhere else); ``fp32`` keeps both in
full float32. torch's own defaults are mixed (cuDNN TF32 on, cuBLAS off), so a run sets both
flags explicitly, and gives the process's settings back when it ends. The CPU ignores them.

Example:
    >>> with precision("fp32"):
    ...     torch.backends.cudnn.allow_tf32
    False
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from fewshot_cli.choices import PRECISIONS  # noqa: F401 (defined there for the CLI)
from fewshot_cli.errors import FewshotError

# Saved flags: (cuBLAS matmul TF32, cuDNN TF32).
Flags = tuple[bool, bool]


def apply_precision(name: str) -> Flags:
    """Set cuBLAS's and cuDNN's TF32 flags for ``name``; returns the flags they had.

    Args:
        name: ``fp32`` (TF32 off in both) or ``tf32`` (on in both).

    Raises:
        FewshotError: an unknown name.

    Example:
        >>> before = apply_precision("tf32")
        >>> torch.backends.cuda.matmul.allow_tf32
        True
        >>> restore_precision(before)
    """
    if name not in PRECISIONS:
        raise FewshotError(f"unknown precision '{name}' (choose from {', '.join(PRECISIONS)})")
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    return before


def restore_precision(flags: Flags) -> None:
    """Put back the flags ``apply_precision`` returned."""
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


@contextmanager
def precision(name: str) -> Iterator[None]:
    """``name``'s precision inside the block, the previous flags after it (on error too).

    Example::

        with precision(config.precision):
            train_loop()
    """
    flags = apply_precision(name)
    try:
        yield
    finally:
        restore_precision(flags)
