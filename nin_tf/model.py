"""NiN in TensorFlow Keras: the chapter's ``nin_block`` and ``NiN``, built from the spec in ``common``."""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tensorflow import keras

from nin_common.arch import checks, shapes
from nin_common.arch import spec as S
from nin_common.arch.config import model_config
from nin_common.arch.model import ConfiguredModel, ModelOps, native_layers, nin_doc
from .layers import CeilAvgPooling2D, CeilMaxPooling2D, Conv2D, Dropout

BACKEND = "tf"
DATA_FORMAT = "NHWC"


def nin_block(out_channels: int, kernel_size: int, strides: int, padding: int, *,
              num_1x1: int = 2, inner_kernel_size: int = 1) -> keras.Sequential:
    """The chapter's ``nin_block``; ``padding`` is in pixels, as in the other backends."""
    return build_block(S.nin_stage(out_channels, kernel_size, strides, padding, num_1x1, inner_kernel_size))


class NiN(keras.Model, ConfiguredModel):
    __doc__ = nin_doc("``self.net.layers``", "Inputs are NHWC.")

    def __init__(self, lr: float = 0.1, num_classes: Optional[int] = None, in_channels: Optional[int] = None,
                 variant: Optional[str] = None, seed: Optional[int] = None, init: Optional[str] = None,
                 image_size: Optional[int] = None, weights: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.config = model_config(lr, num_classes, in_channels, variant, seed, init, image_size, weights)
        self.net = keras.Sequential(native_layers(LAYERS, self.spec, self.image_size))
        side = self.image_size if shapes.has_dense(self.spec) else None
        self.net.build((None, side, side, self.in_channels))
        self.build((None, side, side, self.in_channels))
        import_weights(self, self.config.initial_weights())

    def call(self, X, training=False):
        checks.check_input_shape(self.spec, tuple(X.shape), DATA_FORMAT, self.image_size)  # None: traced, unknown
        return self.net(X, training=training)


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


# each spec layer as a Keras layer (Keras infers the input shapes)
LAYERS = {
    S.Block: lambda layer, _: build_block(layer),
    S.MaxPool: lambda layer, _: (CeilMaxPooling2D if layer.ceil_mode else keras.layers.MaxPooling2D)(
        pool_size=layer.size, strides=layer.stride),
    S.AvgPool: lambda layer, _: (CeilAvgPooling2D if layer.ceil_mode else keras.layers.AveragePooling2D)(
        pool_size=layer.size, strides=layer.stride),
    S.Dropout: lambda layer, _: Dropout(layer.rate),
    S.GlobalAvgPool: lambda layer, _: keras.layers.GlobalAveragePooling2D(),
    S.Flatten: lambda layer, _: keras.layers.Flatten(),
    S.Dense: lambda layer, _: keras.layers.Dense(layer.out_features),
}


class KerasOps(ModelOps):
    """The hooks of ``nin_common.arch.model.ModelOps`` in Keras: kernels are ``kernel``, layers run with
    ``training=False``."""

    conv_type = keras.layers.Conv2D
    weight_attr = "kernel"

    def layers(self, model):
        return list(model.net.layers)

    def value(self, param):
        return param.numpy()

    def assign(self, model, items):
        for prefix, kind, var, value in items:
            var.assign(self.to_native(model, prefix, kind, value))

    def tensor(self, model, x):
        return tf.convert_to_tensor(x)

    def numpy(self, y):
        return y.numpy()

    def run_layer(self, layer, X):
        return layer(X, training=False)

    def forward(self, model, X):
        return model(X, training=False)

    def num_params(self, model):
        return int(model.count_params())


ops = KerasOps(DATA_FORMAT)
export_weights, import_weights, layer_shapes, predict, num_params = ops.functions()
parametrized_layers, variables, to_canonical, to_native = (ops.parametrized_layers, ops.variables, ops.to_canonical,
                                                           ops.to_native)
