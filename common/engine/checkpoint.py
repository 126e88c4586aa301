"""Checkpoints, in one place: a native weight file with its description, and a training run's checkpoint folder.

A native checkpoint is the framework's own weight file (``model.pt``, ``model.params``,
``model.weights.h5``, ``model.msgpack``) with a ``<file>.json`` beside it holding the model's constructor
arguments and the file's sha256, so that any backend can rebuild the model to load it into.  The backends'
own side (the framework's save and load) is ``nin_<backend>.checkpoint``, through ``save`` and ``load`` here.

A training run keeps the checkpoint of its last finished epoch in ``<run>/checkpoint``: the native file, the
canonical ``model.npz``, the optimizer state, and ``state.json`` (written last, with every other file's sha256),
replaced atomically at each epoch end (``write_checkpoint``).  ``load_checkpoint`` reads a native file, a
canonical ``.npz`` or a run folder back into any backend.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from typing import Callable, Optional

from nin_common.arch.config import stored_config
from nin_common.arch.weights import check_weights, load_npz, save_npz
from nin_common.engine import registry
from nin_common.util.files import atomic_path, check_not_folder, dumps, first_line, read_json, write_json

CONFIG_FORMAT = "nin-native-1"
CONFIG_KEYS = ("backend", "model", "format", "sha256")
OPTIONAL_KEYS = ("sha256",)  # descriptions written before it was recorded have none


def config_path(path) -> str:
    return os.fspath(path) + ".json"


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_config(path, backend: str, kwargs: dict) -> None:
    """The description of the native file ``path``: its backend, model arguments and sha256 (any damage to
    the file is then found before its framework reads it: not every framework checks what it reads)."""
    write_json(config_path(path), {"backend": backend, "model": kwargs, "format": CONFIG_FORMAT,
                                   "sha256": sha256_of(path)})


def check_sha256(path, desc: dict) -> None:
    if "sha256" in desc and sha256_of(path) != desc["sha256"]:
        raise ValueError(f"expected {os.fspath(path)} to have the sha256 its description {config_path(path)} "
                         f"records, got another: the file is damaged or was replaced")


def read_config(path) -> dict:
    """The checked description of a native checkpoint: ``{"backend", "model", "format"}``."""
    cfg = config_path(path)
    if not os.path.exists(os.fspath(path)):
        raise FileNotFoundError(f"no checkpoint at {os.fspath(path)}")
    if not os.path.exists(cfg):
        raise ValueError(f"expected the model description {cfg} beside checkpoint {os.fspath(path)}; it is missing")
    return check_config(read_json(cfg, "a model description (JSON)"), cfg)


def check_config(desc, cfg: str) -> dict:
    if not isinstance(desc, dict):
        raise ValueError(f"expected {cfg} to hold a JSON object with keys {', '.join(CONFIG_KEYS)}, "
                         f"got a {type(desc).__name__}")
    unknown = sorted(set(desc) - set(CONFIG_KEYS))
    missing = [k for k in CONFIG_KEYS if k not in desc and k not in OPTIONAL_KEYS]
    if unknown or missing:
        raise ValueError(f"expected {cfg} to hold the keys {', '.join(CONFIG_KEYS)}, got "
                         + "; ".join(([f"unknown {', '.join(map(repr, unknown))}"] if unknown else [])
                                     + ([f"no {', '.join(map(repr, missing))}"] if missing else [])))
    if desc["format"] != CONFIG_FORMAT:
        raise ValueError(f"expected format {CONFIG_FORMAT!r} in {cfg}, got {desc['format']!r}")
    if desc["backend"] not in registry.BACKENDS:
        raise ValueError(f"expected the backend in {cfg} to be one of {', '.join(registry.BACKENDS)}, "
                         f"got {desc['backend']!r}")
    stored_config(desc["model"], cfg)
    return desc


def backend_of(path) -> str:
    """Which backend wrote a checkpoint: from its description, else from its file ending."""
    if os.path.exists(config_path(path)):
        return read_config(path)["backend"]
    return registry.of_suffix(os.fspath(path))


def save(backend, model, path, write) -> None:
    """Write a native checkpoint atomically with ``write(model, tmp_path)``, then its description."""
    check_not_folder(config_path(path))
    with atomic_path(path, registry.info(backend.BACKEND).native_suffix) as tmp:
        write(model, tmp)
    write_config(path, backend.BACKEND, model.config.kwargs)


def unreadable(path, backend: str, reason, what: str = "") -> ValueError:
    """The one error for a native file its framework cannot load (empty, truncated, damaged, another format,
    other weights than its description announces): it names the file and quotes only the first line of the
    framework's message (``reason``: that exception, or words).  ``what`` the file should be, if not weights."""
    fw = registry.framework(backend)
    text = first_line(reason, 120) if isinstance(reason, BaseException) else reason
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        text = "the file is empty"
    what = what or f"a {registry.info(backend).native_suffix} weight file that fits its description"
    return ValueError(f"expected {os.fspath(path)} to be {what}, got one {fw} cannot load ({text})")


def load(backend, path, model, read, errors):
    """Read a native checkpoint into ``model`` (or a new model built from its description).

    ``read(fresh_model, path)`` is the framework's own loader; it fills a fresh model built from the
    checkpoint's description, and ``errors`` are its exceptions for a file that does not fit or cannot be
    read; they become a ValueError naming the file.  Nothing in ``model`` changes unless the whole
    checkpoint fits it and its weights are finite.
    """
    desc = read_config(path)
    check_sha256(path, desc)
    fresh = backend.NiN(**desc["model"])
    try:
        read(fresh, os.fspath(path))
    except errors as err:
        raise unreadable(path, backend.BACKEND, err) from err
    try:
        weights = check_weights(fresh.spec, backend.export_weights(fresh), fresh.image_size)
    except ValueError as err:
        raise ValueError(f"{os.fspath(path)}: {err}") from err
    if model is None:
        return fresh
    backend.import_weights(model, weights)
    return model

# -------------------------------------------------------------- a training run's checkpoint folder

STATE_FORMAT = "nin-train-1"
STATE_FILE = "state.json"
CHECKPOINT = "checkpoint"
# the settings a state file records (fit's arguments but the model, data_dir, out, resume and progress)
SETTINGS = ("variant", "epochs", "batch_size", "lr", "image_size", "limit_train", "limit_val", "device",
            "precision", "seed", "init")


def _complete(folder: str) -> Optional[int]:
    """The epoch of a complete checkpoint folder (its state file is written last), else None."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return int(read_json(path)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


# what a state file holds: key -> the type its value must have
STATE_KEYS = {"format": str, "backend": str, "epoch": int, "step": int, "elapsed_s": (int, float),
              "settings": dict, "rows": list, "native": str, "canonical": str, "rng": str}
# the files a checkpoint folder holds besides its state file, with their sha256 (state files written before
# this was recorded have none)
FILES_KEY = "files"


def find_checkpoint(path) -> str:
    """The newest complete checkpoint folder of a run: ``path`` itself, or ``path/checkpoint`` (or the
    ``.new``/``.old`` folder a write interrupted between its two renames left behind)."""
    path = os.fspath(path)
    if _complete(path) is not None:
        return path
    found = [(_complete(os.path.join(path, CHECKPOINT + end)), os.path.join(path, CHECKPOINT + end))
             for end in ("", ".new", ".old")]
    found = [(epoch, folder) for epoch, folder in found if epoch is not None]
    if not found:
        if not os.path.exists(path):
            raise FileNotFoundError(f"no training run at {path}")
        raise FileNotFoundError(f"no training checkpoint in {path} (expected {os.path.join(path, CHECKPOINT)}/"
                                f"{STATE_FILE}, written at the end of each epoch)")
    return max(found)[1]


def write_checkpoint(run_dir: str, write: Callable[[str], None]) -> str:
    """Write a checkpoint folder atomically: ``write(folder)`` fills ``checkpoint.new`` (state file last),
    which then replaces ``checkpoint``.  The previous checkpoint stays until the new one is complete."""
    final, new, old = (os.path.join(run_dir, CHECKPOINT + end) for end in ("", ".new", ".old"))
    if not os.path.isdir(final) and _complete(new) is not None:  # an earlier swap stopped half-way
        os.replace(new, final)
    shutil.rmtree(new, ignore_errors=True)
    os.makedirs(new)
    write(new)
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(final):
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_bytes(spec, image_size: int) -> int:
    """A generous bound on the disk a run folder needs: two checkpoints at once (the new one is complete
    before the old one goes), each with native and canonical weights and an optimizer state of up to two
    copies of them, float32; and a MiB for metrics, curves and descriptions."""
    from nin_common.arch.shapes import param_shapes

    params = sum(math.prod(shape) for shape in param_shapes(spec, image_size).values())
    return 2 * 4 * (4 * params) + 2**20


def native_name(backend: str) -> str:
    return "model" + registry.info(backend).native_suffix


def save_training_checkpoint(run_dir: str, mod, trainer, model, state: dict) -> str:
    """Native weights (with their description), canonical ``model.npz``, optimizer state, then ``state.json``."""
    def write(folder: str) -> None:
        mod.save_native(model, os.path.join(folder, native_name(mod.BACKEND)))
        save_npz(os.path.join(folder, "model.npz"), mod.export_weights(model), backend=mod.BACKEND,
                 epoch=state["epoch"], model=dumps(model.config.kwargs))
        trainer.save_state(folder)
        files = {name: sha256_of(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}
        write_json(os.path.join(folder, STATE_FILE), dict(state, **{FILES_KEY: files}))
    return write_checkpoint(run_dir, write)


def read_state(folder: str) -> dict:
    """The checked state file of a checkpoint folder; every file it lists must still have its sha256."""
    path = os.path.join(folder, STATE_FILE)
    state = read_json(path, f"a {STATE_FORMAT} state file")
    if not isinstance(state, dict):
        raise ValueError(f"expected {path} to hold a JSON object, got a {type(state).__name__}")
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"expected a {STATE_FORMAT} state file in {folder}, got format {state.get('format')!r}")
    wrong = [f"{k!r}" + ("" if k in state else " (missing)") for k, kind in STATE_KEYS.items()
             if not isinstance(state.get(k), kind) or isinstance(state.get(k), bool)]
    if wrong:
        raise ValueError(f"expected {path} to hold {', '.join(STATE_KEYS)} as nin train writes them, got a "
                         f"wrong or missing {', '.join(wrong)}")
    settings = state["settings"]
    missing = [k for k in SETTINGS if k not in settings]
    if missing or state["backend"] not in registry.BACKENDS:
        raise ValueError(f"expected {path} to name one of {', '.join(registry.BACKENDS)} and hold the settings "
                         f"{', '.join(SETTINGS)}, got backend {state['backend']!r}"
                         + (f" and no {', '.join(missing)}" if missing else ""))
    listed = state.get(FILES_KEY, {})
    if not isinstance(listed, dict):
        raise ValueError(f"expected {FILES_KEY!r} in {path} to map file names to sha256, got a {type(listed).__name__}")
    for name, digest in listed.items():
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise ValueError(f"expected {file} (listed in {path}), got no such file")
        if sha256_of(file) != digest:
            raise ValueError(f"expected {file} to have the sha256 {path} records, got another: the file is "
                             f"damaged or was replaced")
    return state


def resume_settings(path) -> dict:
    """The settings (and backend) of the run a ``--resume`` path points to."""
    state = read_state(find_checkpoint(path))
    return dict(state["settings"], backend=state["backend"])


def read_npz_checkpoint(path: str):
    """(canonical weights, model arguments, backend that wrote them or None) of a canonical ``.npz`` written by
    ``nin train`` (``model.npz``) or ``nin convert --to npz``; anything else is a ValueError naming the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    weights, meta = load_npz(path)
    if "model" not in meta:
        raise ValueError(f"expected {path} to carry its model description (as nin train and nin convert --to npz "
                         f"write it), it has none")
    try:
        kwargs = json.loads(str(meta["model"]))
    except ValueError as err:
        raise ValueError(f"expected the model description in {path} to be JSON, got {str(meta['model'])[:80]!r}") \
            from err
    config = stored_config(kwargs, path)
    try:
        weights = check_weights(config.spec, weights, config.image_size)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    written_by = meta.get("backend")
    return weights, config.kwargs, written_by if written_by in registry.BACKENDS else None


def trained_precision(path) -> Optional[str]:
    """The precision setting a run folder trained with (``auto`` resolves as it did on the same machine), or
    None for a weights file, which records none."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return None
    return read_state(find_checkpoint(path))["settings"].get("precision")


def load_checkpoint(path, backend: Optional[str] = None):
    """(backend module, model, image size) from a native file, a canonical ``.npz``, or a run/checkpoint folder.

    A folder or ``.npz`` can be loaded into any backend (through the canonical weights); a native file
    only into the backend that wrote it.
    """
    path = os.fspath(path)
    image_size = None
    if os.path.isdir(path):
        folder = find_checkpoint(path)
        state = read_state(folder)
        image_size = state["settings"]["image_size"]
        same = backend in (None, state["backend"])
        path = os.path.join(folder, state["native"] if same else state["canonical"])
    if path.endswith(".npz"):
        weights, kwargs, written_by = read_npz_checkpoint(path)
        if backend is None and written_by is None:
            raise ValueError(f"expected --backend: {path} holds canonical weights that name no backend")
        mod = registry.load(backend or written_by)
        model = mod.NiN(**kwargs)
        try:
            mod.import_weights(model, weights)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        return mod, model, image_size or model.image_size
    written_by = backend_of(path)
    if backend not in (None, written_by):
        raise ValueError(f"expected a {backend} checkpoint, {path} was written by {written_by}; pass its run "
                         f"folder or model.npz (canonical weights) to evaluate it with {backend}")
    mod = registry.load(written_by)
    model = mod.load_native(path)
    return mod, model, image_size or model.image_size
