"""Any image file as a working tensor: one ``uint8 [C, size, size]`` tensor, grayscale or RGB.

Every source that decodes images (``folder``, ``cifar_fs``, ``mini_imagenet`` at another size)
goes through ``plain_image`` and ``fit``, so one picture gives the same pixels whichever source
reads it:

- orientation: the EXIF rotation of camera pictures is applied;
- transparency (RGBA, LA, palettes with a transparent colour): composited onto white, as a
  viewer shows it;
- 16-bit and float pixels: stretched linearly from the image's own minimum to its maximum
  (a 12-bit scan stored in 16 bits would otherwise be almost black);
- palette, CMYK, YCbCr, LAB, HSV: converted to RGB; 1-bit: to grayscale;
- size: LANCZOS-resized straight to ``size x size`` (the aspect ratio is not kept, as the
  mini-ImageNet files were made); an image already at that size is left untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from fewshot_cli.errors import FewshotError

if TYPE_CHECKING:
    from PIL import Image

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
DEEP_MODES = ("I", "F")  # and every "I;16..." mode
GRAY_MODES = ("L", "LA", "La", "1", "I", "F")


def image_extensions() -> frozenset[str]:
    """The file extensions (lower case, with the dot) of every format Pillow can open.

    Example:
        >>> ".png" in image_extensions() and ".txt" not in image_extensions()
        True
    """
    from PIL import Image

    return frozenset(e for e, f in Image.registered_extensions().items() if f in Image.OPEN)


def stretch(image: Image.Image) -> Image.Image:
    """A 16-bit or float grayscale image as 8-bit, its own range stretched to 0..255.

    Example:
        >>> from PIL import Image
        >>> deep = Image.fromarray(np.array([[1000, 3000]], dtype=np.uint16))
        >>> np.asarray(stretch(deep)).tolist()
        [[0, 255]]
    """
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    if high > low:
        scaled = (pixels - low) * (255.0 / (high - low))
    else:  # a flat image has no range: keep its level, read on the 16-bit scale
        scaled = np.full_like(pixels, min(max(low, 0.0), 65535.0) * 255.0 / 65535.0)
    return Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8), mode="L")


def plain_image(image: Image.Image) -> Image.Image:
    """``image`` in mode ``L`` (grayscale sources) or ``RGB`` (everything else), see above.

    Example:
        >>> from PIL import Image
        >>> plain_image(Image.new("RGBA", (4, 4), (255, 0, 0, 0))).getpixel((0, 0))
        (255, 255, 255)
    """
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(image)
    gray = image.mode in GRAY_MODES or image.mode.startswith("I;16")
    if image.mode.startswith("I;16") or image.mode in DEEP_MODES:
        return stretch(image)
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
    if gray:
        return image.convert("L")  # exact for gray RGB: its luma equals each channel
    return image if image.mode == "RGB" else image.convert("RGB")


def fit(image: Image.Image, size: int, channels: int | None = None) -> torch.Tensor:
    """A plain image as ``uint8 [C, size, size]``: converted to ``channels``, then resized.

    Args:
        image: a Pillow image in mode ``L`` or ``RGB`` (see ``plain_image``).
        size: the side of the square result.
        channels: 1 (grayscale), 3 (RGB) or None (keep the image's own: 1 for ``L``).

    Example:
        >>> from PIL import Image
        >>> fit(Image.new("RGB", (60, 40), (9, 9, 9)), 28, channels=1).shape
        torch.Size([1, 28, 28])
    """
    from PIL import Image

    if channels == 1 and image.mode != "L":
        image = image.convert("L")
    elif channels == 3 and image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.LANCZOS)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    if image.mode == "L":
        return pixels.view(1, size, size)
    return pixels.view(size, size, 3).permute(2, 0, 1).contiguous()


def decode(path: str | Path, size: int, channels: int | None = None) -> torch.Tensor:
    """One image file as ``uint8 [C, size, size]`` (see ``plain_image`` and ``fit``).

    Args:
        path: any file Pillow can open, in any mode.
        size: the side of the square result.
        channels: 1, 3, or None for the file's own (1 for grayscale sources, else 3).

    Raises:
        FewshotError: naming the file when it cannot be decoded.

    Example::

        decode("cat.jpg", 84).shape
        # torch.Size([3, 84, 84])
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            return fit(plain_image(image), size, channels)
    except Exception as exc:  # Pillow raises many types for a foreign, truncated or odd file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FewshotError(f"cannot read image {path}: {reason}") from exc


def has_colour(image: torch.Tensor) -> bool:
    """True when a ``[C, H, W]`` image has three channels that differ somewhere.

    Example:
        >>> has_colour(torch.zeros(3, 2, 2, dtype=torch.uint8))
        False
    """
    return image.shape[0] == 3 and not (
        torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    )


def same_channels(
    images: list[torch.Tensor], channels: int | None
) -> tuple[list[torch.Tensor], int]:
    """Bring decoded images to one channel count: ``channels``, or detected when None.

    Detection picks RGB when any image has colour, else grayscale; either way no pixel
    changes value (gray RGB images are exactly their first channel).

    Returns:
        ``(images, channels)``: every image with the same number of channels.

    Example:
        >>> gray = torch.zeros(1, 2, 2, dtype=torch.uint8)
        >>> same_channels([gray], None)[1]
        1
    """
    if channels is None:
        channels = 3 if any(has_colour(image) for image in images) else 1
    if channels == 3:
        return [i.expand(3, -1, -1) if i.shape[0] == 1 else i for i in images], 3
    return [i[:1] if i.shape[0] == 3 else i for i in images], 1
