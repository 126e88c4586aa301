"""Fashion-MNIST: find it, check it, read it, and cut it into batches (framework-free).

Where the data is looked for, in this order:

1. ``data_dir`` (``--data-dir``), else the ``NIN_DATA_DIR`` environment variable;
2. the user cache, ``$XDG_CACHE_HOME/nin/fashion-mnist`` (default ``~/.cache/nin/fashion-mnist``);
3. Debian's system copy, ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``; another
   folder with ``NIN_DATA_SYSTEM_DIR``, e.g. an empty one to try a machine without the package);
4. a download from the official mirror into the cache (a temporary file, renamed into place only once
   it passed its checks).

Each of the four files may be stored gzipped (``<name>.gz``) or plain (``<name>``).  Integrity is the
sha256 of the *decompressed* bytes: Debian rewrote the gzip headers, so the ``.gz`` files differ from
the mirror's while their content is identical.

Images travel as uint8 arrays of shape (N, 28, 28), labels as int64 (N,); the backends scale and
resize them per batch on their device.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nin_common.util.files import atomic_path, clean_temporaries, folder_lock, why
from nin_common.util.values import check_int

FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SHA256 = {  # of the decompressed IDX bytes
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
SYSTEM_DIR = os.environ.get("NIN_DATA_SYSTEM_DIR") or "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
               "ankle boot")
IMAGE_SIDE = 28
NUM_CLASSES = len(CLASS_NAMES)
HOW_TO_GET = ("get it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or download the four "
              "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a "
              "folder and pass --data-dir FOLDER (or set NIN_DATA_DIR)")


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or inconsistent; the message names the file and the fault."""


class DataUnavailable(FileNotFoundError):
    """No source had the data; the message lists what was tried and how to get it."""


@dataclass(frozen=True)
class Split:
    """One split of the data set: uint8 images (N, 28, 28) and int64 labels (N,)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, limit: Optional[int]) -> "Split":
        """The first ``limit`` examples (all of them for ``None``)."""
        if limit is None or limit >= len(self):
            return self
        return Split(self.name, self.images[:limit], self.labels[:limit], self.source)


def cache_dir() -> str:
    """The user cache: ``$XDG_CACHE_HOME/nin/fashion-mnist``, by default ``~/.cache/nin/fashion-mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nin", "fashion-mnist")


# ---------------------------------------------------------------- reading and checking IDX files

IDX_DTYPES = {0x08: np.uint8}
# what each file of Fashion-MNIST holds: number of dimensions, and the sizes after the first
EXPECTED_DIMS = {"images": (3, (IMAGE_SIDE, IMAGE_SIDE)), "labels": (1, ())}


def file_in(folder: str, name: str) -> Optional[str]:
    """The path of ``name`` in ``folder``, gzipped or plain, or None."""
    for candidate in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
        if os.path.isfile(candidate):
            return candidate
    return None


def read_bytes(path: str) -> bytes:
    """The (decompressed) content of an IDX file, ``.gz`` or plain."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:  # unreadable (permissions), a folder, an I/O error
        raise DataError(f"{path}: cannot be read: {why(err, file=False)}") from err
    try:
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: the gzip stream is truncated or corrupt ({err})") from err


def parse_idx(content: bytes, kind: str, path: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes, checking the magic number, the dimensions and the length.

    ``kind`` is ``"images"`` (3-D, 28x28) or ``"labels"`` (1-D, values below 10).
    """
    ndim, inner = EXPECTED_DIMS[kind]
    if len(content) < 4:
        raise DataError(f"{path}: truncated: {len(content)} bytes, not even the 4-byte magic number")
    zero, code, dims = int.from_bytes(content[:2], "big"), content[2], content[3]
    if zero != 0 or code not in IDX_DTYPES:
        raise DataError(f"{path}: bad magic number 0x{content[:4].hex()}: expected 0x0000080{ndim} "
                        f"(IDX, unsigned bytes, {ndim}-D {kind}); is this an IDX file?")
    if dims != ndim:
        raise DataError(f"{path}: expected {kind} in {ndim} dimension(s) (magic 0x0000080{ndim}), "
                        f"the header says {dims}")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: truncated: {len(content)} bytes, shorter than its {header}-byte header")
    shape = tuple(int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if shape[1:] != inner:
        raise DataError(f"{path}: expected {kind} of {'x'.join(map(str, inner))} pixels, "
                        f"the header says {'x'.join(map(str, shape[1:]))}")
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(content) != expected:
        fault = "truncated" if len(content) < expected else "too long"
        raise DataError(f"{path}: {fault}: the header announces {shape[0]} {kind} ({expected} bytes), "
                        f"the file has {len(content)} bytes")
    array = np.frombuffer(content, dtype=IDX_DTYPES[code], offset=header).reshape(shape)
    if kind == "labels":
        if array.size and array.max() >= NUM_CLASSES:
            raise DataError(f"{path}: expected labels 0..{NUM_CLASSES - 1}, found {int(array.max())}")
        return array.astype(np.int64)
    return array.copy()  # writable, independent of the bytes


def check_sha256(content: bytes, expected: Optional[str], path: str) -> None:
    if expected is None:
        return
    got = hashlib.sha256(content).hexdigest()
    if got != expected:
        raise DataError(f"{path}: wrong checksum: sha256 of the decompressed content is {got}, expected "
                        f"{expected}; the file is corrupt or not the Fashion-MNIST release (delete it to "
                        f"fetch it again)")


def read_idx(path: str, kind: str, sha256: Optional[str] = None) -> np.ndarray:
    """Read, parse and (when ``sha256`` is given) verify one IDX file."""
    content = read_bytes(path)
    array = parse_idx(content, kind, path)
    check_sha256(content, sha256, path)
    return array


_MEMO: Dict[tuple, Split] = {}


def read_split(folder: str, split: str, checksums: Optional[Mapping[str, str]] = None) -> Split:
    """Read one split (``"train"`` or ``"test"``) from ``folder``, with every check.

    ``checksums`` maps file names to sha256 values (default: Fashion-MNIST's own); pass ``{}`` to skip.
    A split read before (same files, unchanged on disk) comes from memory.
    """
    if split not in FILES:
        raise ValueError(f"expected split 'train' or 'test', got {split!r}")
    checksums = SHA256 if checksums is None else checksums
    paths = []
    for name in FILES[split]:
        path = file_in(folder, name)
        if path is None:
            raise DataUnavailable(f"{os.path.join(folder, name)}(.gz) is missing; {HOW_TO_GET}")
        paths.append(path)
    key = (split, tuple((os.path.realpath(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths),
           tuple(sorted(checksums.items())))
    if key not in _MEMO:
        (img_name, lab_name), (img_path, lab_path) = FILES[split], paths
        images = read_idx(img_path, "images", checksums.get(img_name))
        labels = read_idx(lab_path, "labels", checksums.get(lab_name))
        if len(images) != len(labels):
            raise DataError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} "
                            f"labels: the two files do not belong together")
        _MEMO[key] = Split(split, images, labels, folder)
    return _MEMO[key]


# ---------------------------------------------------------------- finding and downloading

def download(folder: str, names: Sequence[str], mirrors: Sequence[str] = MIRRORS,
             checksums: Optional[Mapping[str, str]] = None,
             opener: Callable = urllib.request.urlopen, progress: bool = True) -> None:
    """Fetch ``<name>.gz`` for each name into ``folder``.

    Each file goes to a temporary file beside its target and is renamed into place only once it
    decompresses, parses and matches its checksum; a failed file leaves nothing behind.  Raises
    DataUnavailable naming each mirror's fault when no mirror delivers a file.
    """
    checksums = SHA256 if checksums is None else checksums
    for name in names:
        target = os.path.join(folder, name + ".gz")
        faults = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name + ".gz"
            try:
                with atomic_path(target, suffix=".gz") as tmp:
                    _fetch(url, tmp, opener, progress)
                    kind = "images" if "images" in name else "labels"
                    read_idx(tmp, kind, checksums.get(name))
                break
            except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
                faults.append(f"{url}: {err}")
        else:
            raise DataUnavailable("download failed: " + "; ".join(faults))


def _fetch(url: str, path: str, opener: Callable, progress: bool) -> None:
    from nin_common.util.progress import bar as progress_bar

    with opener(url, timeout=60) as response, open(path, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0) or None
        with progress_bar(progress, total=total, unit="B", unit_scale=True, desc=os.path.basename(url),
                          leave=False) as bar:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                bar.update(len(chunk))


def _missing(folder: str, names: Sequence[str]) -> List[str]:
    return [name for name in names if file_in(folder, name) is None]


def check_named_source(folder: str, option: str, names: Sequence[str]) -> str:
    """A folder the user named (``--data-dir``, ``NIN_DATA_DIR``) is a requirement, never replaced by another
    source: it must be a readable folder holding every file (as a file).  Returns it."""
    if not os.path.isdir(folder):
        raise DataUnavailable(f"expected {option} {folder} to be a folder with the Fashion-MNIST files, got "
                              + ("a file" if os.path.exists(folder) else "no such folder") + f"; {HOW_TO_GET}")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"expected {option} {folder} to be a readable folder, got one this user cannot read")
    for name in names:
        for candidate in (os.path.join(folder, name + ".gz"), os.path.join(folder, name)):
            if os.path.exists(candidate) and not os.path.isfile(candidate):
                raise DataError(f"expected {candidate} to be a file, got a folder (or another non-file)")
    missing = _missing(folder, names)
    if missing:
        raise DataUnavailable(f"expected {option} {folder} to hold the Fashion-MNIST files, got no "
                              f"{', '.join(m + '(.gz)' for m in missing)}; {HOW_TO_GET}")
    return folder


def locate(data_dir: Optional[str] = None, *, download_to_cache: bool = True,
           mirrors: Optional[Sequence[str]] = None, system_dir: str = SYSTEM_DIR,
           opener: Callable = urllib.request.urlopen, progress: bool = True) -> str:
    """The folder holding the four Fashion-MNIST files, downloading them into the cache if need be.

    Sources in order: ``data_dir`` (else ``$NIN_DATA_DIR``), the user cache, Debian's copy, a
    download into the cache.  A folder named by ``data_dir`` or ``$NIN_DATA_DIR`` is the only source tried:
    one that cannot serve is an error (DataUnavailable or DataError), not replaced by another.  ``mirrors``
    defaults to ``$NIN_DATA_MIRROR`` (comma-separated URLs), else the official mirror.  Raises
    DataUnavailable listing what was tried and how to get the data.
    """
    names = [n for pair in FILES.values() for n in pair]
    if data_dir:
        return check_named_source(data_dir, "--data-dir", names)
    if os.environ.get("NIN_DATA_DIR"):
        return check_named_source(os.environ["NIN_DATA_DIR"], "NIN_DATA_DIR", names)
    tried = []
    candidates = [("user cache", cache_dir()), ("Debian's dataset-fashion-mnist", system_dir)]
    for label, folder in candidates:
        if not os.path.isdir(folder):
            tried.append(f"{label} {folder}: no such folder")
            continue
        missing = _missing(folder, names)
        if not missing:
            return folder
        tried.append(f"{label} {folder}: missing {', '.join(m + '(.gz)' for m in missing)}")
    if mirrors is None:
        mirrors = tuple(m for m in os.environ.get("NIN_DATA_MIRROR", "").split(",") if m) or MIRRORS
    if download_to_cache:
        folder = cache_dir()
        try:
            os.makedirs(folder, exist_ok=True)
            # one download at a time (the lock file sits in the cache's parent, not among the data files); then
            # the leftovers of a download that was killed go
            with folder_lock(os.path.dirname(folder), wait=True):
                clean_temporaries(folder)
                download(folder, _missing(folder, names), mirrors, opener=opener, progress=progress)
            return folder
        except OSError as err:
            tried.append(f"{str(err) if isinstance(err, DataUnavailable) else f'download into {folder}: {err}'}")
    else:
        tried.append("download: not allowed")
    raise DataUnavailable("Fashion-MNIST not found. Tried:\n  " + "\n  ".join(tried) + f"\nTo fix: {HOW_TO_GET}.")


def load(split: str, data_dir: Optional[str] = None, limit: Optional[int] = None, **locate_kwargs) -> Split:
    """One split of Fashion-MNIST (``"train"`` or ``"test"``), located, checked, and cut to ``limit``."""
    return read_split(locate(data_dir, **locate_kwargs), split).head(limit)


# ---------------------------------------------------------------- batches

def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the ``n`` training examples in ``epoch``: a shuffle determined by (seed, epoch) alone."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def batches(split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0,
            epoch: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(uint8 images (B, 28, 28), int64 labels (B,)) batches; the last one may be smaller.

    With ``shuffle`` the order depends on (seed, epoch) only, so every backend sees the same batch
    sequence and a resumed run sees the batches an uninterrupted one would have seen.
    """
    check_int("batch_size", batch_size)
    n = len(split)
    order = epoch_order(n, seed, epoch) if shuffle else None
    for start in range(0, n, batch_size):
        if order is None:
            yield split.images[start:start + batch_size], split.labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield split.images[idx], split.labels[idx]


def clear_memo() -> None:
    """Forget the splits read so far (tests use it to read files again)."""
    _MEMO.clear()

