"""Fashion-MNIST loading: IDX checks on files the tests write, the search order, downloads, batches."""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

from nin_common.engine import data
from conftest import REPO

SYSTEM = data.SYSTEM_DIR
NAMES = [name for pair in data.FILES.values() for name in pair]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes holding ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = True) -> str:
    content = idx_bytes(array)
    path = str(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(content) if gz else content)
    return hashlib.sha256(content).hexdigest()


def fake_split(folder, split="train", n=5, n_labels=None, gz=True, seed=0):
    """Write a small valid split; returns (images, labels, checksums)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n if n_labels is None else n_labels).astype(np.uint8)
    img_name, lab_name = data.FILES[split]
    sums = {img_name: write_idx(os.path.join(folder, img_name), images, gz),
            lab_name: write_idx(os.path.join(folder, lab_name), labels, gz)}
    return images, labels, sums


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """Each test reads files again and sees its own empty cache and no NIN_DATA_* settings."""
    data.clear_memo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))
    monkeypatch.delenv("NIN_DATA_DIR", raising=False)
    monkeypatch.delenv("NIN_DATA_MIRROR", raising=False)
    yield
    data.clear_memo()


def need_system_copy():
    if not os.path.isdir(SYSTEM):
        if os.environ.get("NIN_REQUIRE_DATA") == "1":
            pytest.fail(f"{SYSTEM} is missing (install dataset-fashion-mnist)", pytrace=False)
        pytest.skip(f"needs Debian's dataset-fashion-mnist in {SYSTEM}")


# ---------------------------------------------------------------- IDX files the tests write

@pytest.mark.parametrize("gz", [True, False])
def test_valid_files_read_back_exactly(tmp_path, gz):
    images, labels, sums = fake_split(tmp_path, "test", n=7, gz=gz)
    split = data.read_split(str(tmp_path), "test", checksums=sums)
    assert split.images.dtype == np.uint8 and split.images.shape == (7, 28, 28)
    assert split.labels.dtype == np.int64 and split.labels.shape == (7,)
    np.testing.assert_array_equal(split.images, images)
    np.testing.assert_array_equal(split.labels, labels)
    assert len(split.head(3)) == 3 and len(split.head(None)) == 7 and len(split.head(100)) == 7


def test_truncated_file_names_file_and_fault(tmp_path):
    _, _, sums = fake_split(tmp_path, "train", n=4, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte: truncated: the header announces 4 "
                                             r"images \(3152 bytes\), the file has 3052 bytes"):
        data.read_split(str(tmp_path), "train", checksums=sums)


def test_truncated_gzip_stream(tmp_path):
    _, _, sums = fake_split(tmp_path, "train", n=4)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte.gz: the gzip stream is truncated or corrupt"):
        data.read_split(str(tmp_path), "train", checksums=sums)


def test_bad_magic(tmp_path):
    _, _, sums = fake_split(tmp_path, "train", n=3)
    with open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(gzip.compress(b"\x50\x4b\x03\x04" + bytes(100)))  # a zip file's magic
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: bad magic number 0x504b0304: "
                                             r"expected 0x00000803"):
        data.read_split(str(tmp_path), "train", checksums=sums)


def test_labels_file_given_for_images(tmp_path):
    fake_split(tmp_path, "train", n=3)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(data.DataError, match="expected images in 3 dimension"):
        data.read_split(str(tmp_path), "train", checksums={})


def test_wrong_image_dimensions(tmp_path):
    fake_split(tmp_path, "train", n=3)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(data.DataError, match="expected images of 28x28 pixels, the header says 32x32"):
        data.read_split(str(tmp_path), "train", checksums={})


def test_label_out_of_range(tmp_path):
    fake_split(tmp_path, "train", n=3)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 12, 3], np.uint8))
    with pytest.raises(data.DataError, match="expected labels 0..9, found 12"):
        data.read_split(str(tmp_path), "train", checksums={})


def test_count_mismatch_names_both_files(tmp_path):
    _, _, sums = fake_split(tmp_path, "train", n=5, n_labels=4)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz holds 5 images but .*"
                                             r"train-labels-idx1-ubyte.gz holds 4 labels"):
        data.read_split(str(tmp_path), "train", checksums=sums)


def test_wrong_checksum(tmp_path):
    fake_split(tmp_path, "train", n=5)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte.gz: wrong checksum: sha256 of the "
                                             r"decompressed content is [0-9a-f]{64}, expected c59f468a"):
        data.read_split(str(tmp_path), "train")  # Fashion-MNIST's own checksums


def test_missing_file(tmp_path):
    fake_split(tmp_path, "train", n=2)
    os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(data.DataUnavailable, match="train-labels-idx1-ubyte\\(.gz\\) is missing"):
        data.read_split(str(tmp_path), "train", checksums={})


# ---------------------------------------------------------------- where the data is looked for

def complete_folder(folder):
    os.makedirs(folder, exist_ok=True)
    for split in data.FILES:
        fake_split(folder, split, n=2)
    return str(folder)


def test_search_order(tmp_path, monkeypatch):
    mine, system = complete_folder(tmp_path / "mine"), complete_folder(tmp_path / "system")
    cache = complete_folder(data.cache_dir())
    assert data.cache_dir() == str(tmp_path / "cache-home" / "nin" / "fashion-mnist")
    assert data.locate(mine, system_dir=system) == mine
    monkeypatch.setenv("NIN_DATA_DIR", mine)
    assert data.locate(system_dir=system) == mine
    monkeypatch.delenv("NIN_DATA_DIR")
    assert data.locate(system_dir=system) == cache
    os.remove(os.path.join(cache, "t10k-labels-idx1-ubyte.gz"))  # an incomplete folder is passed over
    assert data.locate(system_dir=system) == system


def test_nothing_found_lists_what_was_tried(tmp_path):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    with pytest.raises(data.DataUnavailable) as err:
        data.locate(None, system_dir=str(tmp_path / "none"), opener=offline, progress=False)
    text = str(err.value)
    for fragment in ("Fashion-MNIST not found. Tried:", "user cache",
                     f"{tmp_path / 'none'}: no such folder", "no network", "apt-get install dataset-fashion-mnist",
                     "--data-dir"):
        assert fragment in text
    cache = data.cache_dir()
    assert not os.path.exists(cache) or os.listdir(cache) == []  # no partial download left


def test_download_from_a_local_mirror_into_the_cache(tmp_path):
    need_system_copy()
    mirror = "file://" + SYSTEM  # the real files, served by urllib like a web mirror
    folder = data.locate(None, system_dir=str(tmp_path / "none"), mirrors=[mirror], progress=False)
    assert folder == data.cache_dir()
    assert sorted(os.listdir(folder)) == sorted(n + ".gz" for n in NAMES)
    test = data.read_split(folder, "test")
    assert test.images.shape == (10000, 28, 28) and np.bincount(test.labels).tolist() == [1000] * 10


def test_download_failing_its_check_leaves_nothing(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    complete_folder(mirror)  # valid IDX files, but not Fashion-MNIST: the checksums fail
    monkeypatch.setenv("NIN_DATA_MIRROR", "file://" + str(mirror))
    with pytest.raises(data.DataUnavailable, match="wrong checksum"):
        data.locate(None, system_dir=str(tmp_path / "none"), progress=False)
    assert os.listdir(data.cache_dir()) == []


# ---------------------------------------------------------------- the real data and batches

def test_system_copy_matches_the_published_checksums():
    need_system_copy()
    train = data.read_split(SYSTEM, "train")
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [6000] * 10


def test_batches_deterministic_by_seed_and_epoch(tmp_path):
    images, labels, sums = fake_split(tmp_path, "train", n=23)
    split = data.read_split(str(tmp_path), "train", checksums=sums)

    def order(**kw):
        return np.concatenate([y for _, y in data.batches(split, 5, shuffle=True, **kw)])

    sizes = [len(y) for _, y in data.batches(split, 5, shuffle=True, seed=1, epoch=1)]
    assert sizes == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(order(seed=1, epoch=1), order(seed=1, epoch=1))
    assert not np.array_equal(order(seed=1, epoch=1), order(seed=1, epoch=2))
    assert not np.array_equal(order(seed=1, epoch=1), order(seed=2, epoch=1))
    perm = data.epoch_order(23, 1, 1)
    np.testing.assert_array_equal(order(seed=1, epoch=1), labels[perm])
    assert sorted(perm.tolist()) == list(range(23))  # each example once
    xs = [x for x, _ in data.batches(split, 5, shuffle=True, seed=1, epoch=1)]
    np.testing.assert_array_equal(np.concatenate(xs), images[perm])
    assert all(x.dtype == np.uint8 for x in xs)
    plain = np.concatenate([y for _, y in data.batches(split.head(12), 5)])
    np.testing.assert_array_equal(plain, labels[:12])  # no shuffle: file order
    with pytest.raises(ValueError, match="expected batch_size to be a positive integer, got 0"):
        next(data.batches(split, 0))


FAKE_APT = """#!/bin/sh
echo "$@" >> {log}
[ "$1" = update ] && exit 0
{action}
"""


def make_data(tmp_path, action):
    """``make data`` (what ``make train`` and ``make test`` run first) on a machine without Fashion-MNIST, with
    ``apt-get`` replaced by a script that logs its arguments and does ``action``."""
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the README's two commands need it", pytrace=False)
    bin_dir, system = tmp_path / "bin", tmp_path / "system"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(log=tmp_path / "apt.log", action=action))
    apt.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "NIN_DATA_DIR"}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", NIN_DATA_SYSTEM_DIR=str(system),
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    return subprocess.run(["make", "-s", "--no-print-directory", "data", f"VENV={sys.prefix}", "SUDO="], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300), system, tmp_path / "apt.log"


def test_make_installs_debians_package_where_the_data_is_missing(tmp_path, fashion_mnist):
    copy = "mkdir -p \"$NIN_DATA_SYSTEM_DIR\" && cp " + " ".join(
        os.path.join(fashion_mnist, n) for n in sorted(os.listdir(fashion_mnist)) if "ubyte" in n) + \
        " \"$NIN_DATA_SYSTEM_DIR\"/"
    proc, system, log = make_data(tmp_path, copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["make: Fashion-MNIST not found; installing Debian's package "
                                        "dataset-fashion-mnist (apt-get install)"]
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq dataset-fashion-mnist"]
    assert data.locate(download_to_cache=False, system_dir=str(system)) == str(system)
    # where nin finds the data (here NIN_DATA_DIR), make does nothing and says nothing
    found = subprocess.run(["make", "-s", "--no-print-directory", "data", f"VENV={sys.prefix}"], cwd=REPO,
                           env=dict(os.environ, NIN_DATA_DIR=str(system)), capture_output=True, text=True,
                           timeout=300)
    assert (found.returncode, found.stdout, found.stderr) == (0, "", "")


def test_make_says_in_one_line_when_debians_package_cannot_be_installed(tmp_path):
    proc, system, log = make_data(tmp_path, "echo 'E: Unable to locate package' >&2; exit 100")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # nin train then says what it tried, in its own error
    assert proc.stdout.splitlines() == [
        "make: Fashion-MNIST not found; installing Debian's package dataset-fashion-mnist (apt-get install)",
        "make: apt-get could not install dataset-fashion-mnist; nin will try the download"]
    assert proc.stderr == "" and not system.exists()
