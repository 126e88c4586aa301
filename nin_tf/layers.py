"""Keras layers the NiN of ``nin_tf.model`` needs beyond Keras' own: ceil-mode pooling, a convolution whose bias
add TensorFlow can fuse, and dropout whose mask does not depend on the compute dtype."""
from __future__ import annotations

import tensorflow as tf
from tensorflow import keras

from nin_common.arch import shapes


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
