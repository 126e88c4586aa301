"""Makes the committed test images: Fashion-MNIST test images turned into what a learner would photograph (a
light background, larger, tinted, not square), and one garment drawn by hand with Pillow.

    python tests/images/make_images.py
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from nin_common.engine import data  # noqa: E402

# file -> (test-set index, canvas size, tint, format)
DERIVED = {"test-0-ankle-boot.png": (0, (300, 240), (255, 240, 220), "PNG"),
           "test-1-pullover.jpg": (1, (256, 320), (220, 235, 255), "JPEG"),
           "test-2-trouser-grey.png": (2, (224, 224), None, "PNG"),
           "test-3-trouser-alpha.png": (3, (280, 200), (230, 255, 230), "PNG")}


def derived(index, size, tint):
    img = 255 - data.load("test", limit=index + 1, progress=False).images[index]  # dark garment on white
    side = min(size) - 40
    garment = Image.fromarray(img).resize((side, side), Image.BICUBIC)
    canvas = Image.new("L", size, 255)
    canvas.paste(garment, ((size[0] - side) // 2, (size[1] - side) // 2))
    if tint is None:
        return canvas
    rgb = np.asarray(canvas.convert("RGB"), dtype=np.float64) * np.asarray(tint) / 255
    return Image.fromarray(rgb.astype(np.uint8))


def main():
    for name, (index, size, tint, fmt) in DERIVED.items():
        img = derived(index, size, tint)
        if "alpha" in name:  # the white background made transparent
            rgba = img.convert("RGBA")
            px = np.asarray(rgba).copy()
            px[..., 3] = np.where(np.asarray(img.convert("L")) > 220, 0, 255)
            img = Image.fromarray(px)
        img.save(os.path.join(HERE, name), fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    drawn = Image.new("RGB", (240, 300), (250, 250, 245))  # a pair of trousers, drawn
    ImageDraw.Draw(drawn).polygon([(70, 30), (170, 30), (185, 270), (135, 270), (120, 110), (105, 270),
                                   (55, 270)], fill=(40, 50, 90))
    drawn.save(os.path.join(HERE, "drawn-trousers.png"))


if __name__ == "__main__":
    main()
