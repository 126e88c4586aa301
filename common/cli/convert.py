"""``nin convert``: one backend's checkpoint as another's, through the canonical weights."""
from __future__ import annotations

import os
from typing import Optional

from nin_common.cli import options as O
from nin_common.engine import checkpoint as ck
from nin_common.engine import registry
from nin_common.arch.weights import check_weights, save_npz
from nin_common.arch.config import model_config
from nin_common.util.files import check_not_folder, dumps

NPZ = "npz"
ONNX = "onnx"
TARGETS = registry.BACKENDS + (NPZ, ONNX)
NPZ_FORMAT = "nin-canonical-1"


def add_parser(sub) -> None:
    p = O.subcommand(sub, "convert", "turn a checkpoint of one backend into a native checkpoint of another "
                                     "(or into canonical .npz weights, or an ONNX model)")
    O.checkpoint(p)
    p.add_argument("--to", required=True, choices=TARGETS,
                   help="the target backend, npz, or onnx (an ONNX graph built from the network's spec, NCHW "
                        "input 'images', output 'logits'; runs in ONNX Runtime)")
    p.add_argument("--out", required=True, help="the file to write (for a backend, its .json description is "
                                                "written beside it)")
    p.set_defaults(run=run)


def checkpoint_file(path: str) -> str:
    """A run folder (or its checkpoint/) stands for its native weights, as in ``nin evaluate``."""
    if os.path.isdir(path):
        folder = ck.find_checkpoint(path)
        return os.path.join(folder, ck.read_state(folder)["native"])
    return path


def suffix_of(target: str) -> str:
    return {NPZ: ".npz", ONNX: ".onnx"}.get(target) or registry.info(target).native_suffix


def source_of(path: str) -> str:
    """``npz`` for canonical weights, else the backend that wrote the checkpoint."""
    return NPZ if os.fspath(path).endswith(".npz") else ck.backend_of(path)


def read_canonical(path: str):
    """(canonical weights, model constructor arguments, the backend they come from or None) from any
    checkpoint; only its backend is imported."""
    source = source_of(path)
    if source == NPZ:
        return ck.read_npz_checkpoint(path)
    mod = registry.load(source)
    model = mod.load_native(path)
    return mod.export_weights(model), dict(model.config.kwargs), source


def write_canonical(weights, kwargs: dict, target: str, out: str, backend: Optional[str] = None) -> None:
    """Write canonical weights as a native checkpoint of ``target`` (or as .npz recording ``backend``, the one
    they come from, which ``nin evaluate`` uses by default; or as .onnx), atomically."""
    if target == ONNX:
        from nin_common.tools import onnx_graph

        onnx_graph.export(model_config(**kwargs).spec, weights, kwargs, out, **{"nin.source": backend or ""})
        return
    if target == NPZ:
        check_weights(model_config(**kwargs).spec, weights, kwargs["image_size"])
        meta = dict(model=dumps(kwargs), format=NPZ_FORMAT)
        save_npz(out, weights, **(dict(meta, backend=backend) if backend else meta))
        return
    mod = registry.load(target)
    model = mod.NiN(**kwargs)
    mod.import_weights(model, weights)
    mod.save_native(model, out)


def run(args) -> int:
    suffix = suffix_of(args.to)
    if not args.out.endswith(suffix):
        raise ValueError(f"expected --out to end with {suffix} for --to {args.to} (the ending "
                         f"{'Keras' if args.to == 'tf' else 'its loader'} expects), got {args.out}")
    check_not_folder(args.out)
    path = checkpoint_file(O.checkpoint_of(args))
    source = source_of(path)
    weights, kwargs, backend = read_canonical(path)
    write_canonical(weights, kwargs, args.to, args.out, backend)
    print(f"converted {path} ({source}) -> {args.out} ({args.to}): {len(weights)} arrays, "
          f"{sum(w.size for w in weights.values()):,} parameters")
    return 0
