"""A learner's own image of a garment in Fashion-MNIST's form (28x28 greyscale uint8, a light garment on a
black background, filling the frame), read with Pillow: what ``nin predict`` feeds the trained model.

What is read: PNG, JPEG (a camera's MPO too), GIF, WebP, TIFF and BMP (``FORMATS``), in every mode Pillow gives
them (``MODES``); of an animation or a multi-page file, the first frame (the one a viewer that does not animate
shows).  A file is refused, with one line saying what was expected and what came (a ValueError), when it is not
such an image (missing, a directory, empty, another format, damaged or truncated), when its header states more than
``MAX_PIXELS`` pixels (checked before anything is decoded, so a decompression bomb costs nothing) or a side under
``MIN_SIDE``, when its grey levels fit none of the ranges below, and when nothing in it stands out from the
background (no garment to crop to).

Grey levels (``PREPROCESSING["depth"]``): the 8-bit modes (1, L, P, RGB, CMYK, YCbCr, with or without alpha) are
converted by Pillow (ITU-R 601-2 luma; CMYK and YCbCr through RGB), LAB through ImageCms to sRGB first.  The 16-bit
modes (I;16, I;16B: 16-bit PNG and TIFF) span 0..65535, mapped onto 0..255 (x / 257, rounded): a 16-bit twin of an
8-bit image (x * 257) reads exactly as the 8-bit one.  A 32-bit integer (I) or floating-point (F) image states no
range, so its values decide: the smallest of 0..1 (floating point only), 0..255 and 0..65535 that holds every value
is mapped linearly onto 0..255; negative values, NaN and values above 65535 are refused.

Transparency (``PREPROCESSING["transparency"]``: an alpha channel, or a transparent palette index, grey level or
colour): composited onto black or white.  A cut-out (more than half of its border transparent) goes onto the one
that more of its opaque pixels stand out from (differ from by more than ``THRESHOLD`` grey levels), white on a
tie: a dark garment lands on white, a light one on black, and neither loses its outline; an image with a
background of its own (its border mostly opaque) goes onto the one nearer that background's median.
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np

SIDE = 28
THRESHOLD = 24  # grey levels a pixel must differ from the background by to count as the garment
MIN_SIDE = 8  # fewer pixels a side cannot show a garment's outline (Fashion-MNIST's garments span about 20)
MAX_SIDE = 8192
MAX_PIXELS = MAX_SIDE * MAX_SIDE  # 64 megapixels: a 64 MP phone photo (9248x6936) passes; under Pillow's own limit
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "TIFF", "BMP")  # Pillow's names, for Image.open(formats=...)
ACCEPTED = "PNG, JPEG, GIF, WebP, TIFF or BMP"
EXPECTED = f"an image file Pillow can read ({ACCEPTED})"
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# the modes read: the ones Pillow opens these formats in; any other is refused in one line
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "I", "F") + SIXTEEN_BIT
# what read_garment does, in words: the trained weights' metadata carries it (``preprocessing``)
PREPROCESSING = {
    "form": "Fashion-MNIST's: 28x28 greyscale uint8, a light garment on a black background, filling the frame",
    "read": "the first frame; EXIF orientation applied; converted to greyscale (ITU-R 601-2 luma)",
    "depth": "16-bit grey / 257; 32-bit integer or float: the smallest of 0..1 (float only), 0..255, 0..65535 "
             "holding every value, mapped onto 0..255",
    "transparency": f"composited onto black or white: a cut-out (border mostly transparent) onto the one more "
                    f"opaque pixels differ from by more than {THRESHOLD} grey levels (white on a tie), else onto the "
                    "one nearer the opaque border's median",
    "invert": "when the image's border is lighter than mid-grey (a garment photographed on a light background)",
    "crop": f"to the pixels that differ from the border's median by more than {THRESHOLD} grey levels; the "
            "background taken to black; padded to a square with black",
    "resize": "to 28x28 with Lanczos",
    "scale": "x / 255, then bilinear (half-pixel centres) from 28x28 to image_size, as in training",
}


def read_garment(path) -> np.ndarray:
    """(28, 28) uint8: the first frame, EXIF orientation applied, grey (high bit depths scaled, transparency
    composited: see the module's docstring), inverted when the border is lighter than mid-grey, cropped to the
    garment, padded to a square, resized with Lanczos.  A file that cannot be read so is one line (ValueError)."""
    return _frame(read_grey(path), os.fspath(path))


def read_grey(path) -> np.ndarray:
    """(H, W) uint8 grey levels of the image at ``path``, upright, transparency composited (see the module's
    docstring); ValueError, one line, for a file that is not such an image or states too many or too few pixels."""
    path = os.fspath(path)
    _check_file(path)
    # Pillow warns about files it still reads (corrupt EXIF, a size past its own bomb warning, which the size check
    # below refuses anyway): a warning would be a second line on stderr, and what is read is checked here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = _open(path)
        with img:
            _check_size(path, *img.size)  # from the header: nothing is decoded yet
            try:
                from PIL import ImageOps

                img = ImageOps.exif_transpose(img)  # decodes the first frame
                img.load()
            except Exception as err:  # any failure to decode is the file's (Pillow raises OSError, SyntaxError, ...)
                raise ValueError(f"expected {EXPECTED}, got {path}: {_first_line(err)}") from err
        grey, alpha = _grey_and_alpha(img, path)
    return grey if alpha is None else _composite(grey, alpha)


def _check_file(path: str) -> None:
    if os.path.isdir(path):
        raise ValueError(f"expected {EXPECTED}, got {path}: a directory")
    if not os.path.exists(path):
        raise ValueError(f"expected {EXPECTED}, got {path}: no such file")
    if not os.path.isfile(path):
        raise ValueError(f"expected {EXPECTED}, got {path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"expected {EXPECTED}, got {path}: an empty file")


def _open(path: str):
    """Pillow's image at ``path`` opened, only its header read, in one of ``FORMATS``."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError as err:  # Pillow's own limit, far above MAX_PIXELS
        stated = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(stated.group(1)):,} pixels" if stated else f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels"
        raise ValueError(f"expected an image of at most {MAX_PIXELS:,} pixels ({MAX_SIDE}x{MAX_SIDE}), "
                         f"got {path}: {size}") from err
    except UnidentifiedImageError as err:
        raise ValueError(f"expected {EXPECTED}, got {path}: not an image in one of these formats") from err
    except Exception as err:  # a damaged header (Pillow raises OSError, SyntaxError, ValueError, ...)
        raise ValueError(f"expected {EXPECTED}, got {path}: {_first_line(err)}") from err


def _check_size(path: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ValueError(f"expected an image of at most {MAX_PIXELS:,} pixels ({MAX_SIDE}x{MAX_SIDE}), got {path}: "
                         f"{width}x{height}")
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"expected an image at least {MIN_SIDE}x{MIN_SIDE} pixels, got {path}: {width}x{height}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _grey_and_alpha(img, path: str):
    """(grey uint8, alpha uint8 or None) of a decoded image, by the rules of the module's docstring."""
    if img.mode not in MODES:
        raise ValueError(f"expected an image in one of Pillow's modes {', '.join(MODES)}, got {path}: mode "
                         f"{img.mode}")
    if img.mode in SIXTEEN_BIT or img.mode in ("I", "F"):
        raw = np.asarray(img)
        alpha = None
        key = img.info.get("transparency")
        if isinstance(key, (int, float)) and not isinstance(key, bool):  # a 16-bit PNG's transparent grey level
            alpha = np.where(raw == key, 0, 255).astype(np.uint8)
        return _scaled(raw, img.mode, path), alpha
    if img.mode == "LAB":
        from PIL import ImageCms

        lab_to_srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                              "LAB", "RGB")
        return np.asarray(ImageCms.applyTransform(img, lab_to_srgb).convert("L")), None
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        return np.asarray(rgba.convert("L")), np.asarray(rgba.getchannel("A"))
    return np.asarray(img.convert("L")), None


def _scaled(raw: np.ndarray, mode: str, path: str) -> np.ndarray:
    """A 16-bit, 32-bit integer or floating-point image's values onto 0..255 (the module's docstring)."""
    if mode in SIXTEEN_BIT:
        top = 65535
    else:
        if mode == "F" and not np.isfinite(raw).all():
            raise ValueError(f"expected finite grey levels in a floating-point (F) image, got {path}: NaN or "
                             f"infinity in {int((~np.isfinite(raw)).sum())} pixels")
        lo, hi = raw.min(), raw.max()
        tops = ((1, 255, 65535) if mode == "F" else (255, 65535))
        fits = [t for t in tops if lo >= 0 and hi <= t]
        if not fits:
            ranges = ", ".join(f"0..{t}" for t in tops)
            raise ValueError(f"expected grey levels within {ranges} in a {mode} image, got {path}: "
                             f"{_number(lo)}..{_number(hi)}")
        top = fits[0]
    return np.rint(raw.astype(np.float32) * np.float32(255 / top)).clip(0, 255).astype(np.uint8)


def _number(v) -> str:
    return str(int(v)) if float(v).is_integer() else f"{float(v):g}"


def _composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``grey`` laid on black or white where ``alpha`` (0 transparent .. 255 opaque) says (the module's docstring)."""
    if alpha.min() == 255:
        return grey
    a = alpha.astype(np.float32) / 255
    border_alpha = _border(alpha)
    opaque_border = _border(grey)[border_alpha >= 128]
    if len(opaque_border) * 2 >= len(border_alpha):  # a background of its own: the one nearer it
        background = 255 if np.median(opaque_border) > 127 else 0
    else:  # a cut-out: the one more of what is opaque stands out from (white on a tie: paper)
        opaque = grey[alpha >= 128].astype(np.int16)
        on_white, on_black = np.count_nonzero(255 - opaque > THRESHOLD), np.count_nonzero(opaque > THRESHOLD)
        background = 0 if on_black > on_white else 255
    return np.rint(grey * a + background * (1 - a)).astype(np.uint8)


def _border(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def _frame(grey: np.ndarray, path: str) -> np.ndarray:
    """Fashion-MNIST's form of a grey image: inverted when its border is light, cropped to what differs from the
    background, the background to black, padded to a square, resized to 28x28 with Lanczos."""
    from PIL import Image

    if np.median(_border(grey)) > 127:
        grey = 255 - grey
    background = int(np.median(_border(grey)))
    garment = np.abs(grey.astype(np.int16) - background) > THRESHOLD
    rows, cols = np.nonzero(garment.any(axis=1))[0], np.nonzero(garment.any(axis=0))[0]
    if not len(rows):
        raise ValueError(f"expected an image of a garment, got {path}: no pixel differs from the background by more "
                         f"than {THRESHOLD} grey levels")
    grey = grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    grey = np.clip(grey.astype(np.int16) - background, 0, 255).astype(np.uint8)  # the background to black
    h, w = grey.shape
    side = max(h, w)
    square = np.zeros((side, side), np.uint8)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = grey
    return np.asarray(Image.fromarray(square).resize((SIDE, SIDE), Image.LANCZOS), dtype=np.uint8)
