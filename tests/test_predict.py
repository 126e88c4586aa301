"""nin predict: a learner's own images, read into Fashion-MNIST's form, and the trained model's top classes."""
import glob
import json
import os
import struct
import warnings
import zlib

import numpy as np
import pytest

from nin_common import cli
from nin_common.arch.reference import resize_bilinear
from nin_common.engine import data
from nin_common.tools import images
from nin_common.tools.images import read_garment
from conftest import REPO, load_backend, to_layout

IMAGES = os.path.join(REPO, "tests", "images")
# the committed images made from test-set images (tests/images/make_images.py): file -> test-set index
DERIVED = {"test-0-ankle-boot.png": 0, "test-1-pullover.jpg": 1, "test-2-trouser-grey.png": 2,
           "test-3-trouser-alpha.png": 3}
ACCEPTED = "expected an image file Pillow can read (PNG, JPEG, GIF, WebP, TIFF or BMP), got"
TOO_BIG = "expected an image of at most 67,108,864 pixels (8192x8192), got"


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_a_photographed_test_image_comes_back_in_fashion_mnist_form(name, tmp_path):
    from PIL import Image

    got = read_garment(os.path.join(IMAGES, name))
    assert got.shape == (28, 28) and got.dtype == np.uint8
    corrs = []
    for i, source in enumerate(data.load("test", limit=10, progress=False).images):
        Image.fromarray(source).save(tmp_path / f"source{i}.png")
        framed = read_garment(tmp_path / f"source{i}.png")  # the source through the same crop and resize
        corrs.append(np.corrcoef(got.ravel().astype(float), framed.ravel().astype(float))[0, 1])
    # inverted, enlarged, tinted, JPEG-compressed and shrunk back: its own source matches best of ten test
    # images, and closely (measured 0.93-0.99: tinting, JPEG and two resamplings blur it a little)
    assert int(np.argmax(corrs)) == DERIVED[name] and corrs[DERIVED[name]] > 0.9, corrs
    assert got.mean() < 128  # light on black, as Fashion-MNIST


def test_the_trained_model_gives_the_source_images_class_in_every_backend(backend):
    model = backend.NiN(weights="quick")
    from nin_common.engine import training

    trainer = training.make_trainer(backend.BACKEND, model, model.lr, "cpu", "fp32")
    photographed = np.stack([read_garment(os.path.join(IMAGES, n)) for n in sorted(DERIVED)])
    sources = data.load("test", limit=4, progress=False).images[[DERIVED[n] for n in sorted(DERIVED)]]
    np.testing.assert_array_equal(trainer.predict_step(photographed, 67).argmax(1),
                                  trainer.predict_step(sources, 67).argmax(1))


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_predict_prints_the_top_classes_in_every_backend(all_backends, capsys):
    from nin_common.arch import pretrained
    from nin_common.tools.parity import TOLERANCE

    if len(all_backends) < 2:
        pytest.skip(f"needs two backends to compare, got {[m.BACKEND for m in all_backends]} installed")
    names = [m.BACKEND for m in all_backends]
    files = sorted(glob.glob(os.path.join(IMAGES, "*.png")) + glob.glob(os.path.join(IMAGES, "*.jpg")))
    argv = ["predict", *files, "--backend", ",".join(names), "--top", "3", "--json", "--device", "cpu"]
    assert cli.main(argv) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == len(names) * len(files)
    classes = pretrained.metadata("quick")["classes"]
    # the same preprocessed images through each backend's public API: x / 255, bilinear to the weights' size
    x = resize_bilinear(np.stack([read_garment(f) for f in files])[:, None] / 255.0, 67).astype(np.float32)
    firsts = {}
    for mod in all_backends:
        logits = mod.predict(mod.NiN(weights="quick"), to_layout(x, mod.DATA_FORMAT))
        want = softmax(logits)
        # logits within parity's forward tolerance (relative to max|logit|) of each other move each log p by at
        # most twice that: p within a relative 2 * eps (and float64 rounding)
        eps = TOLERANCE["forward"] * float(np.abs(logits).max())
        for path, p in zip(files, want):
            row = next(r for r in rows if r["image"] == path and r["backend"] == mod.BACKEND)
            got = [t["p"] for t in row["top"]]
            assert len(got) == 3 and got == sorted(got, reverse=True) and sum(got) <= 1 + 1e-9
            idx = [classes.index(t["cls"]) for t in row["top"]]
            np.testing.assert_allclose(got, p[idx], rtol=2 * eps + 1e-12, atol=1e-15,
                                       err_msg=f"{mod.BACKEND} {path}: the printed p is not softmax(logits)")
            np.testing.assert_allclose(got, np.sort(p)[::-1][:3], rtol=2 * eps + 1e-12, atol=1e-15,
                                       err_msg=f"{mod.BACKEND} {path}: the printed classes are not the top 3")
            firsts.setdefault(path, set()).add(row["top"][0]["cls"])
    assert all(len(v) == 1 for v in firsts.values()), firsts  # the same top class in every backend
    assert firsts[os.path.join(IMAGES, "drawn-trousers.png")] == {"trouser"}


# ---------------------------------------------------------------- every mode and format reads as its 8-bit twin

def garment():
    """The plain 8-bit grey twin: the committed ankle boot (300x240, not square, so a rotation shows), its
    tinted background and the near-white around the boot made white (255: what the transparent variants make
    transparent, as make_images.py does for its transparent PNG)."""
    from PIL import Image

    grey = np.asarray(Image.open(os.path.join(IMAGES, "test-0-ankle-boot.png")).convert("L"))
    return np.where(grey > 220, 255, grey).astype(np.uint8)


def another():
    """A second frame for the animations: the drawn trousers, in the twin's size."""
    from PIL import Image

    return Image.open(os.path.join(IMAGES, "drawn-trousers.png")).convert("L").resize((300, 240))


def grey_palette(t, transparent_colour=None):
    """``t`` as a P image whose indices are not its grey levels (the palette in reverse); with a colour, one more
    index of that colour for the background (255), to be made transparent: (image, that index)."""
    from PIL import Image

    levels, index = np.unique(t, return_inverse=True)
    index = (len(levels) - 1 - index.reshape(t.shape)).astype(np.uint8)
    palette = [int(v) for level in levels[::-1] for v in (level,) * 3]
    key = None
    if transparent_colour is not None:
        key = len(levels)
        assert key < 256
        index[t == 255] = key
        palette += list(transparent_colour)
    img = Image.fromarray(index, "P")
    img.putpalette(palette)
    return img, key


def with_alpha(t, mode, under=0):
    """``t`` in ``mode`` (LA, RGBA) with its white background transparent and ``under`` beneath it."""
    from PIL import Image

    alpha = np.where(t == 255, 0, 255).astype(np.uint8)
    grey = Image.fromarray(np.where(t == 255, under, t).astype(np.uint8))
    return Image.merge(mode, [grey] * (len(mode) - 1) + [Image.fromarray(alpha)])


def unused_level(t):
    return min(set(range(255)) - set(np.unique(t).tolist()))


def exif_oriented(t, orientation, fmt, **kw):
    """``t`` stored as a camera stores it when held otherwise, with the EXIF orientation that sets it upright."""
    from PIL import Image

    undo = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
            7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    img = Image.fromarray(t).convert("RGB")
    stored = img if undo is None else img.transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, fmt, dict(kw, exif=exif)


def _variants():
    """file name -> (how it is made from the twin t: (image, format, save options[, its own twin]), how closely
    it reads as the twin: the largest |difference| allowed in the 28x28 read, in grey levels; 0: identically).
    Lossy files (JPEG, lossy WebP, MPO) and those stored in another colour space (YCbCr, LAB) measured at most 1."""
    from PIL import Image

    def rgb(t):
        return Image.fromarray(t).convert("RGB")

    def alpha_tiff(t):
        return with_alpha(t, "LA"), "TIFF", {}

    def pa_tiff(t):
        p, key = grey_palette(t, (0, 0, 0))
        pa = p.convert("PA")
        pa.putalpha(Image.fromarray(np.where(np.asarray(p) == key, 0, 255).astype(np.uint8)))
        return pa, "TIFF", {}

    def key_grey(t):
        u = unused_level(t)
        return Image.fromarray(np.where(t == 255, u, t).astype(np.uint8)), "PNG", {"transparency": u}

    def sixteen_key(t):
        return Image.fromarray(np.where(t == 255, 1, t.astype(np.uint16) * 257).astype(np.uint16)), "PNG", \
            {"transparency": 1}

    def binarized(t):
        twin = np.where(t > 127, 255, 0).astype(np.uint8)
        return Image.fromarray(t > 127), "PNG", {}, twin

    def light_cutout(t):  # a light garment on transparent white: composited onto black, it reads as the twin
        px = np.asarray(Image.fromarray(255 - t).convert("RGBA")).copy()
        px[t == 255] = (255, 255, 255, 0)
        return Image.fromarray(px), "PNG", {}

    def rounded_corners(t):  # an image with its own (white) background and transparent black corners
        px = np.asarray(Image.fromarray(t).convert("RGBA")).copy()
        for rows in (slice(0, 12), slice(-12, None)):
            for cols in (slice(0, 12), slice(-12, None)):
                px[rows, cols] = 0
        return Image.fromarray(px), "PNG", {}

    def animated(fmt, **kw):
        return lambda t: (rgb(t), fmt, dict(kw, save_all=True, append_images=[another().convert("RGB")]))

    return {
        "L.png": (lambda t: (Image.fromarray(t), "PNG", {}), 0),
        "RGB.png": (lambda t: (rgb(t), "PNG", {}), 0),
        "I16.png": (lambda t: (Image.fromarray(t.astype(np.uint16) * 257), "PNG", {}), 0),
        "I16.tiff": (lambda t: (Image.fromarray(t.astype(np.uint16) * 257), "TIFF", {}), 0),
        "I16B.tiff": (lambda t: (Image.fromarray(t.astype(">u2") * 257), "TIFF", {}), 0),
        "I32-0-255.tiff": (lambda t: (Image.fromarray(t.astype(np.int32)), "TIFF", {}), 0),
        "I32-0-65535.tiff": (lambda t: (Image.fromarray(t.astype(np.int32) * 257), "TIFF", {}), 0),
        "F-0-1.tiff": (lambda t: (Image.fromarray(t.astype(np.float32) / 255), "TIFF", {}), 0),
        "F-0-255.tiff": (lambda t: (Image.fromarray(t.astype(np.float32)), "TIFF", {}), 0),
        "F-0-65535.tiff": (lambda t: (Image.fromarray(t.astype(np.float32) * 257), "TIFF", {}), 0),
        "P.png": (lambda t: (grey_palette(t)[0], "PNG", {}), 0),
        "P.gif": (lambda t: (grey_palette(t)[0], "GIF", {}), 0),
        "L.gif": (lambda t: (Image.fromarray(t), "GIF", {}), 0),
        "P.bmp": (lambda t: (grey_palette(t)[0], "BMP", {}), 0),
        "RGB.bmp": (lambda t: (rgb(t), "BMP", {}), 0),
        "RGB.webp": (lambda t: (rgb(t), "WEBP", {"lossless": True}), 0),
        "RGB.tiff": (lambda t: (rgb(t), "TIFF", {"compression": "tiff_lzw"}), 0),
        "1.png": (binarized, 0),
        "CMYK.tiff": (lambda t: (Image.fromarray(t).convert("CMYK"), "TIFF", {}), 0),
        "YCbCr.tiff": (lambda t: (rgb(t).convert("YCbCr"), "TIFF", {}), 1),
        "LAB.tiff": (lambda t: (rgb(t).convert("LAB"), "TIFF", {}), 1),
        "RGB.jpg": (lambda t: (rgb(t), "JPEG", {"quality": 95}), 2),
        "CMYK.jpg": (lambda t: (Image.fromarray(t).convert("CMYK"), "JPEG", {"quality": 95}), 2),
        "RGB-lossy.webp": (lambda t: (rgb(t), "WEBP", {"quality": 95}), 2),
        # transparency: the background transparent, black beneath it (read as it is stored, it is wrong)
        "LA.png": (lambda t: (with_alpha(t, "LA"), "PNG", {}), 0),
        "LA.tiff": (alpha_tiff, 0),
        "RGBA.png": (lambda t: (with_alpha(t, "RGBA"), "PNG", {}), 0),
        "RGBA.webp": (lambda t: (with_alpha(t, "RGBA"), "WEBP", {"lossless": True, "exact": True}), 0),
        "PA.tiff": (pa_tiff, 0),
        "P-tRNS.png": (lambda t: (grey_palette(t, (0, 0, 0))[0], "PNG", {"transparency": len(np.unique(t))}), 0),
        "P-tRNS.gif": (lambda t: (grey_palette(t, (0, 0, 0))[0], "GIF", {"transparency": len(np.unique(t))}), 0),
        "L-tRNS.png": (key_grey, 0),
        "RGB-tRNS.png": (lambda t: (Image.fromarray(np.where(t[..., None] == 255, np.uint8([255, 0, 0]),
                                                              t[..., None]).astype(np.uint8)),
                                    "PNG", {"transparency": (255, 0, 0)}), 0),
        "I16-tRNS.png": (sixteen_key, 0),
        "light-cutout.png": (light_cutout, 0),
        "rounded-corners.png": (rounded_corners, 0),
        # the first frame of an animation or of a multi-page file
        "animated.gif": (animated("GIF"), 0),
        "animated.png": (animated("PNG"), 0),
        "animated.webp": (animated("WEBP", lossless=True), 0),
        "pages.tiff": (animated("TIFF"), 0),
        "camera.mpo": (animated("MPO", quality=95), 2),
        # photos taken sideways: stored turned, with the EXIF orientation that sets them upright
        **{f"orientation-{o}.png": ((lambda o: lambda t: exif_oriented(t, o, "PNG"))(o), 0) for o in range(1, 9)},
        "orientation-6.jpg": (lambda t: exif_oriented(t, 6, "JPEG", quality=95), 2),
        "orientation-8.webp": (lambda t: exif_oriented(t, 8, "WEBP", lossless=True), 0),
        "orientation-3.tiff": (lambda t: exif_oriented(t, 3, "TIFF"), 0),
    }


VARIANTS = _variants()


def make_variants(folder, names=None):
    """Each variant's file in ``folder`` and its twin's (a plain 8-bit grey PNG): {name: (file, twin file)}."""
    from PIL import Image

    t = garment()
    made = {}
    for name in names or VARIANTS:
        img, fmt, options, *twin = VARIANTS[name][0](t)
        path = os.path.join(folder, name)
        img.save(path, fmt, **options)
        twin_path = os.path.join(folder, f"twin-of-{name}.png")
        Image.fromarray(twin[0] if twin else t).save(twin_path)
        made[name] = (path, twin_path)
    return made


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_mode_and_format_reads_as_its_8_bit_grey_twin(name, tmp_path):
    (path, twin_path), = make_variants(tmp_path, [name]).values()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would be a second line on stderr
        got = read_garment(path)
    want = read_garment(twin_path)
    tolerance = VARIANTS[name][1]
    if tolerance == 0:
        np.testing.assert_array_equal(got, want, err_msg=f"{name} reads otherwise than its 8-bit grey twin")
    else:  # lossy (JPEG, lossy WebP) or stored in another colour space: close
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= tolerance, f"{name}: |difference| up to {diff.max()} grey levels"


def test_every_mode_and_format_predicts_what_its_twin_predicts(tmp_path, capsys):
    """One model over every variant: the same top class as the 8-bit grey twin, the same probabilities (lossy
    files: close), nothing on stderr."""
    load_backend("torch")  # skipped where PyTorch is not installed
    made = make_variants(tmp_path)
    files = [f for pair in made.values() for f in pair]
    assert cli.main(["predict", *files, "--backend", "torch", "--top", "10", "--json", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    p = {}
    for row in map(json.loads, out.splitlines()):
        p[row["image"]] = {t["cls"]: t["p"] for t in row["top"]}
    for name, (path, twin_path) in made.items():
        got, want = p[path], p[twin_path]
        assert max(got, key=got.get) == max(want, key=want.get), (name, got, want)
        # identical reads: the same probabilities (to float32 rounding in a batch); the others measured within
        # 6e-5 of the twin's
        worst = max(abs(got[c] - want[c]) for c in want)
        assert worst <= (1e-6 if VARIANTS[name][1] == 0 else 1e-3), (name, worst)


# ---------------------------------------------------------------- what cannot be read: one line, exit 2

def png_claiming(width, height):
    """A small PNG whose header states ``width`` x ``height`` (its pixel data is not that: never to be decoded)."""
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (16, 16), 255).save(buf, "PNG")
    raw = bytearray(buf.getvalue())
    ihdr = raw[12:29]  # "IHDR" and its 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    raw[12:29] = ihdr
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(raw)


def bmp_claiming(width, height):
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("L", (16, 16), 255).save(buf, "BMP")
    raw = bytearray(buf.getvalue())
    raw[18:26] = struct.pack("<ii", width, height)
    return bytes(raw)


def truncated(fmt, **options):
    def make(folder):
        from PIL import Image

        path = os.path.join(folder, "cut." + fmt.lower())
        Image.fromarray(garment()).convert("RGB").save(path, fmt, **options)
        with open(path, "rb") as f:
            raw = f.read()
        with open(path, "wb") as f:
            f.write(raw[:len(raw) // 2])
        return path
    return make


def written(name, raw):
    def make(folder):
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(raw() if callable(raw) else raw)
        return path
    return make


def saved(name, array_or_image, fmt=None, **options):
    def make(folder):
        from PIL import Image

        img = array_or_image() if callable(array_or_image) else array_or_image
        img = img if isinstance(img, Image.Image) else Image.fromarray(img)
        path = os.path.join(folder, name)
        img.save(path, fmt, **options)
        return path
    return make


BAD = {
    "not an image": (lambda folder: os.path.join(REPO, "README.md"), ACCEPTED),
    "no such file": (lambda folder: "no-such.png", f"{ACCEPTED} no-such.png: no such file"),
    "a directory": (lambda folder: folder, f"{ACCEPTED} {{folder}}: a directory"),
    "an empty file": (written("empty.png", b""), ACCEPTED + " {folder}/empty.png: an empty file"),
    "another format": (saved("garment.ppm", np.zeros((16, 16), np.uint8), "PPM"),
                       ACCEPTED + " {folder}/garment.ppm: not an image in one of these formats"),
    "truncated PNG": (truncated("PNG"), ACCEPTED + " {folder}/cut.png: image file is truncated"),
    "truncated JPEG": (truncated("JPEG"), ACCEPTED + " {folder}/cut.jpeg: image file is truncated"),
    "truncated GIF": (truncated("GIF"), ACCEPTED + " {folder}/cut.gif: image file is truncated"),
    "truncated WebP": (truncated("WEBP"), ACCEPTED + " {folder}/cut.webp:"),
    "truncated TIFF": (truncated("TIFF"), ACCEPTED + " {folder}/cut.tiff: image file is truncated"),
    "truncated BMP": (truncated("BMP"), ACCEPTED + " {folder}/cut.bmp: image file is truncated"),
    "over the limit": (written("big.png", lambda: png_claiming(9000, 8000)), TOO_BIG + " {folder}/big.png: 9000x8000"),
    "past Pillow's warning": (written("bigger.png", lambda: png_claiming(10000, 10000)),
                              TOO_BIG + " {folder}/bigger.png: 10000x10000"),
    "past Pillow's limit": (written("bomb.png", lambda: png_claiming(20000, 20000)),
                            TOO_BIG + " {folder}/bomb.png: 400,000,000 pixels"),
    "a BMP bomb": (written("bomb.bmp", lambda: bmp_claiming(30000, 30000)),
                   TOO_BIG + " {folder}/bomb.bmp: 900,000,000 pixels"),
    "1x1": (saved("dot.png", np.zeros((1, 1), np.uint8)),
            "expected an image at least 8x8 pixels, got {folder}/dot.png: 1x1"),
    "3x3": (saved("tiny.png", np.eye(3, dtype=np.uint8) * 255),
            "expected an image at least 8x8 pixels, got {folder}/tiny.png: 3x3"),
    "a strip": (saved("strip.png", np.zeros((5, 200), np.uint8)),
                "expected an image at least 8x8 pixels, got {folder}/strip.png: 200x5"),
    "blank": (saved("blank.png", np.full((50, 40), 200, np.uint8)),
              "expected an image of a garment, got {folder}/blank.png: no pixel differs from the background by "
              "more than 24 grey levels"),
    "all transparent": (saved("clear.png", np.zeros((50, 40, 4), np.uint8)), "expected an image of a garment"),
    "F with NaN": (saved("nan.tiff", lambda: np.where(garment() == 255, np.nan, garment() / 255).astype(np.float32)),
                   "expected finite grey levels in a floating-point (F) image, got {folder}/nan.tiff: NaN or "
                   "infinity in"),
    "F negative": (saved("neg.tiff", lambda: garment().astype(np.float32) - 128),
                   "expected grey levels within 0..1, 0..255, 0..65535 in a F image, got {folder}/neg.tiff: "
                   "-128..127"),
    "I past 16 bits": (saved("deep.tiff", lambda: garment().astype(np.int32) * 65793),
                       "expected grey levels within 0..255, 0..65535 in a I image, got {folder}/deep.tiff: "
                       "0..16777215"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_what_cannot_be_read_is_one_line_and_exit_2(case, tmp_path, capsys):
    make, expected = BAD[case]
    path = make(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning included: never a line of its own
        assert cli.main(["predict", path]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1, lines
    assert lines[0].startswith("nin predict: error: expected ")
    assert expected.format(folder=tmp_path) in lines[0], lines


def test_an_image_over_the_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    from PIL import ImageFile

    def decode(self, *args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    path = tmp_path / "big.png"
    path.write_bytes(png_claiming(9000, 8000))
    with pytest.raises(ValueError, match="at most 67,108,864 pixels"):
        read_garment(path)


@pytest.mark.parametrize("argv, expected", [
    (["predict", os.path.join(IMAGES, "drawn-trousers.png"), "--top", "11"], "expected --top to be 1 to 10, got 11"),
    (["predict", os.path.join(IMAGES, "drawn-trousers.png"), "--weights", "nope"], "expected weights to be None or"),
])
def test_bad_options_are_one_line_and_exit_2(argv, expected, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_the_weights_state_the_preprocessing_predict_applies():
    from nin_common.arch import pretrained
    for name in pretrained.names():
        assert pretrained.metadata(name)["preprocessing"] == images.PREPROCESSING, name
