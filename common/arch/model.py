"""What every backend's ``NiN`` does the same way, written once; a backend fills in a few hooks.

A backend's ``model`` module holds its framework's ``nin_block`` and ``NiN`` and a table ``{spec layer class:
builder(layer, shape_in)}``; `native_layers` walks ``spec.layers`` through it.  `ConfiguredModel` gives ``NiN``
the attributes every model carries, read from ``self.config`` (`nin_common.arch.config.model_config`), and
`NIN_DOC` its docstring.  `ModelOps` is weights in and out, ``layer_shapes``, ``predict`` and ``num_params`` over
the backend's hooks: its native convolutions and parameters, native arrays to and from NumPy, one layer's run,
evaluation mode.
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, List, Mapping, Sequence, Tuple

import numpy as np

from nin_common.arch import checks
from nin_common.arch import spec as S
from nin_common.arch.config import ModelConfig
from nin_common.arch.shapes import feature_shapes
from nin_common.arch.weights import Weights, canonical_layers, canonical_to_nhwc, check_weights, nhwc_to_canonical

NIN_DOC = """Network in Network (D2L 8.3).  {net} holds the top-level layers in the chapter's order.

    ``NiN(lr=0.1, num_classes=None, in_channels=None, variant=None, seed=None, init=None, image_size=None,
    weights=None)``: an argument left None takes the chapter's value (10 classes, 1 input channel, variant
    ``chapter``, ``init="xavier"``, 224x224 images); ``variant`` names another network of
    ``nin_common.arch.variants``.  Every argument is checked in ``common``, with the same errors in every backend.

    Parameters exist and are initialised on construction: drawn by ``common`` with NumPy from
    ``seed`` (``init="xavier"`` as in the chapter, or ``"kaiming"``), so the same seed gives
    bit-identical weights in every backend.  ``weights="quick"`` starts from trained weights shipped with
    the package (``nin_common.arch.pretrained``); the image size and init then follow from them.{notes}
    """


def nin_doc(net: str = "``self.net``", notes: str = "") -> str:
    """`NIN_DOC` for one backend: how its ``net`` lists the layers, and what only it does (``notes``)."""
    return NIN_DOC.format(net=net, notes=f"  {notes}" if notes else "")


class ConfiguredModel:
    """What every backend's model carries (the contract's ``Model``), read from ``self.config``, which
    ``NiN.__init__`` sets first: ``self.config = model_config(lr, num_classes, ...)``."""

    config: ModelConfig

    @property
    def spec(self) -> S.NetSpec:
        return self.config.spec

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def lr(self) -> float:
        return self.config.lr

    @property
    def num_classes(self) -> int:
        return self.config.spec.num_classes

    @property
    def in_channels(self) -> int:
        return self.config.spec.in_channels


def native_layers(table: Mapping[type, Callable[[Any, Tuple[int, ...]], Any]], spec: S.NetSpec,
                  image_size: int) -> list:
    """``builder(layer, shape_in)`` for every top-level layer of ``spec``, the builder ``table`` holds for the
    layer's class and ``shape_in`` its input's canonical (C, H, W) on ``image_size`` images: a backend's layers."""
    inputs = [(spec.in_channels, image_size, image_size)] + feature_shapes(spec, image_size)[:-1]
    return [S.dispatch(table, layer)(layer, shape_in) for layer, shape_in in zip(spec.layers, inputs)]


class ModelOps:
    """A backend's ``export_weights``, ``import_weights``, ``layer_shapes`` and ``predict``, written once over the
    hooks its subclass fills in (``conv_type``, those that raise here, any default that does not fit), and
    ``num_params``, counted by the framework.  The backend's model module exports the bound methods
    (`functions`)."""

    weight_attr = "weight"  # the attribute of a native conv or dense layer holding its kernel ("kernel" in Keras)
    conv_type: type = object  # the framework's convolution layer class

    def __init__(self, data_format: str):
        self.data_format = data_format

    # ---- hooks
    def block_convs(self, block) -> list:
        """The convolution layers of a native NiN block (its ``layers``, or itself if it has none), in order."""
        return [m for m in getattr(block, "layers", block) if isinstance(m, self.conv_type)]

    def value(self, param) -> np.ndarray:
        """A native parameter's values as NumPy, in the native layout."""
        raise NotImplementedError

    def assign(self, model, items: Sequence[Tuple[str, str, Any, np.ndarray]]) -> None:
        """Set every native parameter from (prefix, kind, parameter, canonical float32 array), already checked."""
        raise NotImplementedError

    def zeros(self, model, shape: Tuple[int, ...]):
        """A float32 batch of zeros on the model's device."""
        return self.tensor(model, np.zeros(shape, np.float32))

    def tensor(self, model, x: np.ndarray):
        """A checked NumPy batch on the model's device."""
        raise NotImplementedError

    def numpy(self, y):
        """A native output as something ``np.array`` reads."""
        return y

    def num_params(self, model) -> int:
        """How many parameters the model has, counted by the framework."""
        raise NotImplementedError

    def layers(self, model) -> list:
        """The model's top-level layers, one per spec layer."""
        return list(model.net)

    def run_layer(self, layer, X):
        return layer(X)

    def forward(self, model, X):
        return model(X)

    def eval_mode(self, model):
        """A context in which the model runs as in evaluation (dropout off, no gradient)."""
        return nullcontext()

    # ---- written once
    def parametrized_layers(self, model) -> List[Tuple[str, Any]]:
        """(canonical prefix, native layer) of every layer with parameters, in network order."""
        return canonical_layers(model.spec, self.layers(model), self.block_convs)

    def variables(self, model) -> List[Tuple[str, str, Any]]:
        """(canonical prefix, "weight" or "bias", native parameter) of every parameter, in network order."""
        return [(prefix, kind, getattr(layer, self.weight_attr if kind == "weight" else "bias"))
                for prefix, layer in self.parametrized_layers(model) for kind in ("weight", "bias")]

    def to_canonical(self, model, prefix: str, kind: str, native) -> np.ndarray:
        """One native array (a kernel, its gradient, a bias) in canonical layout, its dtype kept (a copy)."""
        native = np.array(native)
        if self.data_format == "NCHW":
            return native
        return nhwc_to_canonical(model.spec, model.image_size, prefix, kind, native)

    def to_native(self, model, prefix: str, kind: str, canonical: np.ndarray) -> np.ndarray:
        """The inverse of `to_canonical`: a canonical array in the layout of the native parameter."""
        if self.data_format == "NCHW":
            return canonical
        return canonical_to_nhwc(model.spec, model.image_size, prefix, kind, canonical)

    def export_weights(self, model) -> Weights:
        """Canonical weights: conv OIHW, dense (out, in) with inputs in C, H, W order, float32 NumPy."""
        return {f"{prefix}.{kind}": self.to_canonical(model, prefix, kind, self.value(param)).astype(np.float32)
                for prefix, kind, param in self.variables(model)}

    def import_weights(self, model, weights: Mapping[str, Any]) -> None:
        """Load canonical weights; every name and shape is checked before the model is touched."""
        weights = check_weights(model.spec, weights, model.image_size)
        self.assign(model, [(prefix, kind, param, weights[f"{prefix}.{kind}"])
                            for prefix, kind, param in self.variables(model)])

    def layer_shapes(self, model, input_shape) -> List[Tuple[str, Tuple[int, ...]]]:
        """(layer class name, output shape) of each top-level layer, measured by running the layers."""
        checks.check_input_shape(model.spec, input_shape, self.data_format, model.image_size)
        X = self.zeros(model, tuple(input_shape))
        out = []
        with self.eval_mode(model):
            for layer in self.layers(model):
                X = self.run_layer(layer, X)
                out.append((type(layer).__name__, tuple(X.shape)))
        return out

    def predict(self, model, x) -> np.ndarray:
        """Logits (N, num_classes) as NumPy float32, in evaluation mode; ``x`` is a NumPy batch in the backend's
        ``DATA_FORMAT``."""
        x = checks.check_input_array(model.spec, x, self.data_format, model.image_size)
        with self.eval_mode(model):
            return np.array(self.numpy(self.forward(model, self.tensor(model, x))), dtype=np.float32)

    def functions(self) -> Tuple[Callable, ...]:
        """The model module's functions: ``export_weights, import_weights, layer_shapes, predict, num_params``."""
        return self.export_weights, self.import_weights, self.layer_shapes, self.predict, self.num_params

