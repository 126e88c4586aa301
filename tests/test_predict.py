"""nin predict: a learner's own images, read into Fashion-MNIST's form, and the trained model's top classes."""
import glob
import json
import os

import numpy as np
import pytest

from nin_common import cli
from nin_common.engine import data
from nin_common.tools.images import read_garment
from conftest import REPO

IMAGES = os.path.join(REPO, "tests", "images")
# the committed images made from test-set images (tests/images/make_images.py): file -> test-set index
DERIVED = {"test-0-ankle-boot.png": 0, "test-1-pullover.jpg": 1, "test-2-trouser-grey.png": 2,
           "test-3-trouser-alpha.png": 3}


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


def test_predict_prints_the_top_classes_in_every_backend(capsys):
    files = sorted(glob.glob(os.path.join(IMAGES, "*.png")) + glob.glob(os.path.join(IMAGES, "*.jpg")))
    assert cli.main(["predict", *files, "--backend", "all", "--top", "3", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 * len(files)
    firsts = {}
    for row in rows:
        ps = [t["p"] for t in row["top"]]
        assert len(ps) == 3 and ps == sorted(ps, reverse=True) and sum(ps) <= 1 + 1e-9
        firsts.setdefault(row["image"], set()).add(row["top"][0]["cls"])
    assert all(len(v) == 1 for v in firsts.values())  # the same top class in every backend
    assert firsts[os.path.join(IMAGES, "drawn-trousers.png")] == {"trouser"}


@pytest.mark.parametrize("argv, expected", [
    (["predict", os.path.join(REPO, "README.md")], "expected a PNG or JPEG image, got"),
    (["predict", "no-such.png"], "expected a PNG or JPEG image, got no-such.png: no such file"),
    (["predict", os.path.join(IMAGES, "drawn-trousers.png"), "--top", "11"], "expected --top to be 1 to 10, got 11"),
    (["predict", os.path.join(IMAGES, "drawn-trousers.png"), "--weights", "nope"], "expected weights to be None or"),
])
def test_bad_input_is_one_line_and_exit_2(argv, expected, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0], err


def test_the_weights_state_the_preprocessing_predict_applies():
    from nin_common.arch import pretrained
    from nin_common.tools.images import PREPROCESSING
    for name in pretrained.names():
        assert pretrained.metadata(name)["preprocessing"] == PREPROCESSING, name
