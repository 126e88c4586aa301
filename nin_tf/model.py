"""NiN in TensorFlow Keras, built by walking the spec in ``common``."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from nin_common.arch import checks, shapes
from nin_common.arch import spec as S
from nin_common.arch.config import configure
from nin_common.arch.weights import canonical_layers, canonical_to_nhwc, check_weights, nhwc_to_canonical

BACKEND = "tf"
DATA_FORMAT = "NHWC"


def _pad_for_ceil(inputs, k: int, s: int, value):
    """Pad the bottom and right of an NHWC batch so that a valid k/s pooling covers the partial last window."""
    size = tf.shape(inputs)[1:3]
    pad = tf.maximum(-((size - k) // -s) * s + k - size, 0)
    return tf.pad(inputs, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]], constant_values=value)


class CeilMaxPooling2D(keras.layers.MaxPooling2D):
    """Max pooling whose output size rounds up (Caffe, PyTorch ``ceil_mode=True``, MXNet ``'full'``).

    Keras has no such option: pad the bottom and right with -inf so that the partial
    last window counts, then pool without padding.
    """

    def call(self, inputs):
        return super().call(_pad_for_ceil(inputs, self.pool_size[0], self.strides[0], inputs.dtype.min))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        k, s = self.pool_size[0], self.strides[0]
        return (n, None if h is None else shapes.pool_out(h, k, s, True),
                None if w is None else shapes.pool_out(w, k, s, True), c)


class CeilAvgPooling2D(keras.layers.AveragePooling2D):
    """Average pooling whose output size rounds up; a partial last window averages only its in-image
    elements (Caffe's AVE pooling, PyTorch ``AvgPool2d(ceil_mode=True)``, MXNet ``'full'``).

    Zero-pad the bottom and right, pool the input and a mask of ones the same way, and divide.
    """

    def call(self, inputs):
        k, s = self.pool_size[0], self.strides[0]
        sums = super().call(_pad_for_ceil(inputs, k, s, 0))
        counts = super().call(_pad_for_ceil(tf.ones_like(inputs[..., :1]), k, s, 0))
        return sums / counts

    compute_output_shape = CeilMaxPooling2D.compute_output_shape


class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` that adds its bias with ``tf.nn.bias_add``.

    Keras 3 adds the bias as a broadcast ``add``; TensorFlow's graph optimizer (grappler's remapper) can fuse
    a ``BiasAdd``, not an ``add``, into the oneDNN convolution before it, saving a pass over the feature map
    (measured: training 6% faster at batch 128/224 on a 2-core EPYC).  Same variables, same numbers.
    """

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias, data_format="NHWC" if self.data_format == "channels_last"
                                     else "NCHW")
        return outputs if self.activation is None else self.activation(outputs)


class Dropout(keras.layers.Dropout):
    """``keras.layers.Dropout`` whose mask does not depend on the compute dtype.

    Keras draws the uniform numbers that decide which units to drop in the input's dtype, so under the
    ``mixed_bfloat16`` policy the same seed dropped other units than in float32 (measured: 59% of the masks
    agreed, chance level), and a bf16 run could not be compared step by step with an fp32 one.  Here they are
    drawn in float32 always (the same numbers Keras draws for float32 inputs).
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        # Keras' own dropout of a float32 tensor of ones: 0 or 1/(1 - rate), the mask Keras gives float32 inputs
        scale = keras.random.dropout(tf.ones_like(inputs, dtype=tf.float32), self.rate, noise_shape=self.noise_shape,
                                     seed=self.seed_generator)
        return inputs * tf.cast(scale, inputs.dtype)


def build_block(block: S.Block) -> keras.Sequential:
    """A NiN block as in the chapter: each Conv2D followed by Activation('relu')."""
    layers = []
    for conv in block.convs:
        if conv.padding == 0:
            padding = "valid"
        elif conv.stride == 1 and 2 * conv.padding == conv.kernel_size - 1:
            padding = "same"
        else:  # Keras 'same' would pad differently: pad explicitly, as the other backends do
            layers.append(keras.layers.ZeroPadding2D(conv.padding))
            padding = "valid"
        layers += [Conv2D(conv.out_channels, conv.kernel_size, strides=conv.stride, padding=padding),
                   keras.layers.Activation("relu")]
    return keras.Sequential(layers)


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *,
              num_1x1: int = 2, inner_kernel_size: int = 1) -> keras.Sequential:
    """The chapter's ``nin_block``; ``padding`` is in pixels, as in the other backends."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size))


def build_net(spec: S.NetSpec) -> keras.Sequential:
    layers = []
    for layer in spec.layers:
        if isinstance(layer, S.Block):
            layers.append(build_block(layer))
        elif isinstance(layer, S.MaxPool):
            pool = CeilMaxPooling2D if layer.ceil_mode else keras.layers.MaxPooling2D
            layers.append(pool(pool_size=layer.size, strides=layer.stride))
        elif isinstance(layer, S.AvgPool):
            pool = CeilAvgPooling2D if layer.ceil_mode else keras.layers.AveragePooling2D
            layers.append(pool(pool_size=layer.size, strides=layer.stride))
        elif isinstance(layer, S.Dropout):
            layers.append(Dropout(layer.rate))
        elif isinstance(layer, S.GlobalAvgPool):
            layers.append(keras.layers.GlobalAveragePooling2D())
        elif isinstance(layer, S.Flatten):
            layers.append(keras.layers.Flatten())
        elif isinstance(layer, S.Dense):
            layers.append(keras.layers.Dense(layer.out_features))
        else:  # pragma: no cover
            raise TypeError(f"unknown layer {layer!r}")
    return keras.Sequential(layers)


class NiN(keras.Model):
    """Network in Network (D2L 8.3).  ``self.net.layers`` holds the top-level layers in the chapter's order.

    Parameters exist and are initialised on construction: drawn by ``common`` with NumPy from
    ``seed`` (``init="xavier"`` as in the chapter, or ``"kaiming"``), so the same seed gives
    bit-identical weights in every backend.  ``weights="quick"`` starts from trained weights shipped with
    the package (``nin_common.arch.pretrained``); the image size and init then follow from them.  Inputs are NHWC.
    """

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        config = configure(self, lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        self.net = build_net(config.spec)
        side = config.image_size if shapes.has_dense(config.spec) else None
        self.net.build((None, side, side, self.in_channels))
        self.build((None, side, side, self.in_channels))
        import_weights(self, config.initial_weights())

    def call(self, X, training=False):
        checks.check_input_shape(self.spec, tuple(X.shape), DATA_FORMAT, self.image_size)  # None: traced, unknown
        return self.net(X, training=training)


def parametrized_layers(model: NiN) -> List[Tuple[str, keras.layers.Layer]]:
    """(canonical prefix, native layer) of every layer with parameters, in network order."""
    return canonical_layers(model.spec, model.net.layers,
                            lambda blk: [m for m in blk.layers if isinstance(m, keras.layers.Conv2D)])


def to_canonical(model: NiN, prefix: str, kind: str, native: np.ndarray) -> np.ndarray:
    """One native array (a kernel, its gradient, a bias) in canonical layout, its dtype kept."""
    return nhwc_to_canonical(model.spec, model.image_size, prefix, kind, native)


def to_native(model: NiN, prefix: str, kind: str, canonical: np.ndarray) -> np.ndarray:
    """The inverse of `to_canonical`: a canonical array in the layout of the Keras variable."""
    return canonical_to_nhwc(model.spec, model.image_size, prefix, kind, canonical)


def variables(model: NiN) -> List[Tuple[str, str, keras.Variable]]:
    """(canonical prefix, "weight" or "bias", Keras variable) of every parameter, in network order."""
    return [(prefix, kind, layer.kernel if kind == "weight" else layer.bias)
            for prefix, layer in parametrized_layers(model) for kind in ("weight", "bias")]


def export_weights(model: NiN) -> Dict[str, np.ndarray]:
    """Canonical weights: conv OIHW, dense (out, in) with inputs in C, H, W order, float32 NumPy."""
    return {f"{prefix}.{kind}": to_canonical(model, prefix, kind, var.numpy()).astype(np.float32, copy=False)
            for prefix, kind, var in variables(model)}


def import_weights(model: NiN, weights) -> None:
    """Load canonical weights; every name and shape is checked before the model is touched."""
    weights = check_weights(model.spec, weights, model.image_size)
    for prefix, kind, var in variables(model):
        var.assign(to_native(model, prefix, kind, weights[f"{prefix}.{kind}"]))


def layer_shapes(model: NiN, input_shape) -> List[Tuple[str, Tuple[int, ...]]]:
    """(layer class name, output shape) of each top-level layer, measured by running the layers."""
    checks.check_input_shape(model.spec, input_shape, DATA_FORMAT, model.image_size)
    X = tf.zeros(tuple(input_shape))
    out = []
    for layer in model.net.layers:
        X = layer(X, training=False)
        out.append((type(layer).__name__, tuple(X.shape)))
    return out


def predict(model: NiN, x) -> np.ndarray:
    """Logits (N, num_classes) as NumPy, in evaluation mode; ``x`` is an NHWC NumPy batch."""
    x = checks.check_input_array(model.spec, x, DATA_FORMAT, model.image_size)
    return model(tf.convert_to_tensor(x), training=False).numpy().astype(np.float32)


def num_params(model: NiN) -> int:
    return int(model.count_params())
