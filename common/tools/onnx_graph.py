"""NiN as an ONNX graph, built from the spec and the canonical weights; run with ONNX Runtime.

Route: the graph is written here from ``nin_common.arch.spec`` with the ``onnx`` helper API, and its initializers
are the canonical weights (``nin_common.arch.weights``: conv OIHW, dense (out, in) with inputs in C, H, W order),
which every backend exports exactly.  ONNX's own layout is NCHW and OIHW, the canonical one, so no layout
changes are needed and no framework is imported.  The alternative, each framework's exporter
(``torch.onnx.export``, tf2onnx, MXNet's ``mx.onnx``), would mean three exporters with three sets of
version constraints (tf2onnx lags TensorFlow/Keras 3; MXNet's exporter is unmaintained since 1.9), three
different graphs for the same network (Keras's NHWC graph gains transposes), and no export for a backend
whose exporter is missing; the spec route is one function serving every backend, including ones added later,
and its output depends only on the weights, so converting a PyTorch, an MXNet or a TensorFlow checkpoint
of the same weights gives the same file.

The graph: input ``images`` (N, C, H, W) float32 with N free; output ``logits`` (N, classes); with
``layer_outputs=True`` also ``layer{i}``, every top-level layer's output (canonical layout, as the float64
reference's ``layer_outputs``), for ``nin parity``'s layer check.  Dropout is left out (inference).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Mapping, Optional

import numpy as np

from nin_common.arch import spec as S
from nin_common.arch.shapes import feature_shapes
from nin_common.arch.weights import check_weights
from nin_common.engine.registry import BackendUnavailable
from nin_common.util.files import atomic_path

OPSET = 17  # every operator used (Conv, MaxPool/AveragePool with ceil_mode, Gemm, ...) is unchanged since opset 11
FORMAT = "nin-onnx-1"
NAME = "ONNX Runtime"
INSTALL = "pip install 'nin[onnx]'"


class OnnxUnavailable(BackendUnavailable):
    """``onnx`` or ``onnxruntime`` is not installed (or fails to import); the CLI's one-line error."""


def _import(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except (ImportError, OSError) as err:
        raise OnnxUnavailable(f"ONNX export and ONNX Runtime need the {name} package, which is not installed or "
                              f"fails to import ({err}); install it with: {INSTALL}") from err


def available() -> Optional[str]:
    """None when onnx and onnxruntime import; else the one-line reason (with the install command)."""
    try:
        _import("onnx")
        _import("onnxruntime")
    except OnnxUnavailable as err:
        return str(err)
    return None


def _block(node, layer: S.Block, x: str, out: str, names, prev) -> list:
    nodes = []
    for c, (p, conv) in enumerate(zip(names, layer.convs)):
        nodes.append(node("Conv", [x, f"{p}.weight", f"{p}.bias"], [f"{p}.pre"], name=p,
                          kernel_shape=[conv.kernel_size] * 2, strides=[conv.stride] * 2, pads=[conv.padding] * 4))
        x = out if c == len(layer.convs) - 1 else f"{p}.out"
        nodes.append(node("Relu", [f"{p}.pre"], [x], name=f"{p}.relu"))
    return nodes


def _pool(node, layer, x: str, out: str, *_) -> list:
    op, extra = ("MaxPool", {}) if isinstance(layer, S.MaxPool) else ("AveragePool", {"count_include_pad": 0})
    return [node(op, [x], [out], name=out, kernel_shape=[layer.size] * 2, strides=[layer.stride] * 2,
                 ceil_mode=int(layer.ceil_mode), **extra)]


def _dense(node, layer: S.Dense, x: str, out: str, names, prev) -> list:
    (p,) = names
    nodes = []
    if not isinstance(prev, S.Flatten):  # Gemm takes (N, features)
        nodes.append(node("Flatten", [x], [f"{p}.in"], name=f"{p}.flatten", axis=1))
        x = f"{p}.in"
    return nodes + [node("Gemm", [x, f"{p}.weight", f"{p}.bias"], [out], name=out, transB=1)]


# each spec layer as ONNX nodes: a function of (make_node, layer, input name, output name, the layer's canonical
# parameter prefixes, the layer before it or None)
NODES = {
    S.Block: _block,
    S.MaxPool: _pool,
    S.AvgPool: _pool,
    S.Dropout: lambda node, layer, x, out, *_: [node("Identity", [x], [out], name=out)],  # the identity at inference
    S.GlobalAvgPool: lambda node, layer, x, out, *_: [node("GlobalAveragePool", [x], [out], name=out)],
    S.Flatten: lambda node, layer, x, out, *_: [node("Flatten", [x], [out], name=out, axis=1)],
    S.Dense: _dense,
}


def build(spec: S.NetSpec, weights: Mapping[str, np.ndarray], image_size: int, *, layer_outputs: bool = False,
          meta: Optional[Mapping[str, str]] = None):
    """An ``onnx.ModelProto`` computing ``spec`` with ``weights`` (checked first) on ``image_size`` images."""
    onnx = _import("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weights = check_weights(spec, weights, image_size)
    nodes, inits = [], [numpy_helper.from_array(w, name) for name, w in weights.items()]
    x, prev = "images", None
    layer_names: List[str] = []
    for i, (layer, names) in enumerate(zip(spec.layers, spec.param_names)):
        out = f"layer{i}"
        nodes += S.dispatch(NODES, layer)(helper.make_node, layer, x, out, names, prev)
        x, prev = out, layer
        layer_names.append(out)
    nodes.append(helper.make_node("Identity", [x], ["logits"], name="logits"))

    feats = feature_shapes(spec, image_size)
    value = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])  # noqa: E731
    outputs = [value("logits", (spec.num_classes,))]
    if layer_outputs:
        outputs += [value(name, feat) for name, feat in zip(layer_names, feats)]
    graph = helper.make_graph(nodes, spec.name, [value("images", (spec.in_channels, image_size, image_size))],
                              outputs, inits)
    model = helper.make_model(graph, producer_name="nin", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)  # 8: what ONNX Runtime releases since 1.10 read
    helper.set_model_props(model, dict({"format": FORMAT}, **(meta or {})))
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model, path) -> None:
    """Write a model atomically."""
    with atomic_path(os.fspath(path), suffix=".onnx") as tmp:
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())


def export(spec: S.NetSpec, weights: Mapping[str, np.ndarray], model_kwargs: Mapping, path, **meta) -> None:
    """Build the graph of a model (its constructor arguments ``model_kwargs``) and write it to ``path``;
    the arguments travel in the file's metadata (``nin.model``)."""
    meta = {k: str(v) for k, v in meta.items()}
    meta["nin.model"] = json.dumps(dict(model_kwargs), sort_keys=True)
    save(build(spec, weights, model_kwargs["image_size"], meta=meta), path)


def session(model):
    """An ONNX Runtime session on the CPU for a ModelProto or a path."""
    ort = _import("onnxruntime")
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else os.fspath(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings only from ORT itself, not its per-node info
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run(model, x_nchw: np.ndarray, names: Optional[List[str]] = None) -> Dict[str, np.ndarray]:
    """Run a model (ModelProto, path or session) on an NCHW float32 batch: {output name: array}."""
    sess = model if hasattr(model, "get_outputs") else session(model)
    names = names or [o.name for o in sess.get_outputs()]
    values = sess.run(names, {"images": np.ascontiguousarray(x_nchw, dtype=np.float32)})
    return dict(zip(names, values))


def predict(model, x_nchw: np.ndarray) -> np.ndarray:
    """Logits (N, classes) of a model for an NCHW batch."""
    return run(model, x_nchw, ["logits"])["logits"]


def layer_outputs(model, x_nchw: np.ndarray, count: int) -> List[np.ndarray]:
    """The ``count`` top-level layer outputs of a model built with ``layer_outputs=True``."""
    out = run(model, x_nchw, [f"layer{i}" for i in range(count)])
    return [out[f"layer{i}"] for i in range(count)]


def read_meta(path) -> Dict[str, str]:
    """A .onnx file's metadata (``format``, ``nin.model``, ``nin.source``)."""
    onnx = _import("onnx")
    return {p.key: p.value for p in onnx.load(os.fspath(path), load_external_data=False).metadata_props}
