"""Run folders: atomic checkpoint folders (rotated at each epoch end), their state file, metrics, and loading
a checkpoint back into any backend."""
from __future__ import annotations

import json
import os
import shutil
from typing import Callable, List, Optional

from common.arch.weights import load_npz, save_npz
from common.engine import registry
from common.engine.checkpoint import backend_of
from common.util.files import atomic_path, read_json, write_json

STATE_FORMAT = "nin-train-1"
STATE_FILE = "state.json"
CHECKPOINT = "checkpoint"


def _complete(folder: str) -> Optional[int]:
    """The epoch of a complete checkpoint folder (its state file is written last), else None."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.isfile(path):
        return None
    try:
        return int(read_json(path)["epoch"])
    except (ValueError, KeyError, TypeError):
        return None


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


def native_name(backend: str) -> str:
    return "model" + registry.info(backend).native_suffix


def save_training_checkpoint(run_dir: str, mod, trainer, model, state: dict) -> str:
    """Native weights (with their description), canonical ``model.npz``, optimizer state, then ``state.json``."""
    def write(folder: str) -> None:
        mod.save_native(model, os.path.join(folder, native_name(mod.BACKEND)))
        save_npz(os.path.join(folder, "model.npz"), mod.export_weights(model), backend=mod.BACKEND,
                 epoch=state["epoch"], model=json.dumps(model.config.kwargs, sort_keys=True))
        trainer.save_state(folder)
        write_json(os.path.join(folder, STATE_FILE), state)
    return write_checkpoint(run_dir, write)


def read_state(folder: str) -> dict:
    state = read_json(os.path.join(folder, STATE_FILE))
    if state.get("format") != STATE_FORMAT:
        raise ValueError(f"expected a {STATE_FORMAT} state file in {folder}, got format {state.get('format')!r}")
    return state


def resume_settings(path) -> dict:
    """The settings (and backend) of the run a ``--resume`` path points to."""
    state = read_state(find_checkpoint(path))
    return dict(state["settings"], backend=state["backend"])


def write_metrics(out: str, rows: List[dict], title: str) -> None:
    """``metrics.jsonl`` (one object per epoch) and ``curves.png``, both rewritten atomically."""
    from common.engine.curves import plot_curves

    with atomic_path(os.path.join(out, "metrics.jsonl")) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    plot_curves(rows, os.path.join(out, "curves.png"), title)


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
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no checkpoint at {path}")
        weights, meta = load_npz(path)
        if "model" not in meta:
            raise ValueError(f"expected {path} to hold the model description (written by nin train), it has none")
        mod = registry.load(backend or meta["backend"])
        model = mod.NiN(**json.loads(meta["model"]))
        mod.import_weights(model, weights)
        return mod, model, image_size or model.image_size
    written_by = backend_of(path)
    if backend not in (None, written_by):
        raise ValueError(f"expected a {backend} checkpoint, {path} was written by {written_by}; pass its run "
                         f"folder or model.npz (canonical weights) to evaluate it with {backend}")
    mod = registry.load(written_by)
    model = mod.load_native(path)
    return mod, model, image_size or model.image_size
