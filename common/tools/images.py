"""A learner's own image of a garment in Fashion-MNIST's form (28x28 greyscale uint8, a light garment on a
black background, filling the frame), read with Pillow: what ``nin predict`` feeds the trained model."""
from __future__ import annotations

import os

import numpy as np

SIDE = 28
THRESHOLD = 24  # grey levels a pixel must differ from the background by to count as the garment
# what read_garment does, in words: the trained weights' metadata carries it (``preprocessing``)
PREPROCESSING = {
    "form": "Fashion-MNIST's: 28x28 greyscale uint8, a light garment on a black background, filling the frame",
    "read": "EXIF orientation applied; transparent pixels composited onto white; converted to greyscale",
    "invert": "when the image's border is lighter than mid-grey (a garment photographed on a light background)",
    "crop": f"to the pixels that differ from the border's median by more than {THRESHOLD} grey levels; the "
            "background taken to black; padded to a square with black",
    "resize": "to 28x28 with Lanczos",
    "scale": "x / 255, then bilinear (half-pixel centres) from 28x28 to image_size, as in training",
}


def read_garment(path) -> np.ndarray:
    """(28, 28) uint8: EXIF orientation applied, transparency composited onto white, greyscale, inverted when the
    border is lighter than mid-grey, cropped to the garment, padded to a square, resized with Lanczos."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"expected a PNG or JPEG image, got {path}: no such file")
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"expected a PNG or JPEG image, got {path}: {str(err).splitlines()[0]}") from err
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    grey = np.asarray(img.convert("L"), dtype=np.uint8)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:
        grey = 255 - grey
    background = int(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    rows, cols = np.nonzero(np.abs(grey.astype(int) - background) > THRESHOLD)
    if len(rows):
        grey = grey[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    grey = np.clip(grey.astype(int) - background, 0, 255).astype(np.uint8)  # the background to black
    h, w = grey.shape
    side = max(h, w)
    square = np.zeros((side, side), np.uint8)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = grey
    return np.asarray(Image.fromarray(square).resize((SIDE, SIDE), Image.LANCZOS), dtype=np.uint8)
