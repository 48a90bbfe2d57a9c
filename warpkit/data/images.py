"""One image file → the tensor the lessons' networks see.

:func:`load_image` applies exactly the preprocessing of :mod:`warpkit.data.omniglot`: the image is read as
grey levels, turned into *ink = 1, paper = 0* (dark strokes on light paper, as Omniglot's PNGs), shrunk to
``size``² by exact area averaging (:func:`~warpkit.data.omniglot.area_resize`), rounded to ``uint8`` as the
Omniglot cache stores it (:func:`~warpkit.data.omniglot.to_uint8`) and divided by 255. An Omniglot PNG therefore
gives bit for bit the tensor that ``load_omniglot`` gives for it.

Two things Omniglot never needs, for one's own images: a transparent background counts as paper (images are
composited onto white first), and a non-square image is padded with paper to a centred square before shrinking
(rather than squashed). ``invert=True`` reads light strokes on a dark background.

>>> import tempfile, os
>>> from PIL import Image
>>> path = os.path.join(tempfile.mkdtemp(), "stroke.png")
>>> picture = Image.new("L", (105, 105), 255)
>>> picture.paste(0, (40, 0, 65, 105))            # a black vertical bar on white paper
>>> picture.save(path)
>>> image = load_image(path)
>>> tuple(image.shape), image.dtype, float(image.max()), float(image.min())
((1, 28, 28), torch.float32, 1.0, 0.0)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from warpkit.data.omniglot import area_resize, to_uint8

#: file name endings :func:`load_image` and :meth:`ClassificationTask.from_folder` take as images
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def ink_array(path: str | os.PathLike, invert: bool = False) -> np.ndarray:
    """The image at ``path`` as float32 ink ``[H, W]`` in [0, 1] (ink = 1) at its own resolution, padded with paper
    to a square; transparency counts as paper."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_image(): no image file {path}")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(paper, rgba)
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"load_image(): cannot decode {path} as an image ({type(error).__name__}: {error})") from error
    ink = 1.0 - grey.astype(np.float32) / 255.0
    if invert:
        ink = 1.0 - ink
    height, width = ink.shape
    if height != width:
        side = max(height, width)
        square = np.zeros((side, side), dtype=np.float32)
        top, left = (side - height) // 2, (side - width) // 2
        square[top:top + height, left:left + width] = ink
        ink = square
    return ink


def load_image(path: str | os.PathLike, size: int = 28, invert: bool = False) -> torch.Tensor:
    """The image at ``path`` preprocessed as the lessons' Omniglot images: a float32 tensor ``[1, size, size]``
    in [0, 1] with ink = 1 (module docstring). ``size`` is an int between 1 and 1024."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1024:
        raise ValueError(f"load_image(): size must be an int between 1 and 1024, got {size!r}")
    ink = ink_array(path, invert)
    coverage = to_uint8(area_resize(ink, size))
    return torch.from_numpy(coverage.astype(np.float32) / np.float32(255.0)).unsqueeze(0)


def load_images(paths, size: int = 28, invert: bool = False) -> torch.Tensor:
    """:func:`load_image` of every path, stacked: ``[len(paths), 1, size, size]``."""
    paths = list(paths)
    if not paths:
        raise ValueError("load_images(): no paths given")
    return torch.stack([load_image(p, size, invert) for p in paths])
