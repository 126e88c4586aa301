"""The chapter's own code, for speed comparisons (not part of the package).

What D2L §8.3 runs, per framework: fp32; PyTorch NCHW with the chapter's ``nin_block``
(LazyConv2d); Gluon not hybridized; TensorFlow eager (``GradientTape`` around a plain call, as
d2l's Trainer); JAX with Flax linen and a ``jax.jit`` step (d2l's JAX Trainer).  The input
pipeline is the chapter's too: for PyTorch, MXNet (and JAX, see ``_jax_step``) each 28x28 image is
resized to the training size on the CPU, one sample at a time (d2l's ``FashionMNIST`` applies
torchvision's / Gluon's ``Resize`` + ``ToTensor`` per sample; here PIL's bilinear resize), then
stacked into a batch; for TensorFlow d2l resizes whole batches with ``tf.image.resize_with_pad``
(a ``tf.data`` map after ``batch``), and so does this.  d2l's loaders run in worker processes
that overlap the compute; here the preparation runs inline, a few milliseconds of a step that
takes seconds (``benchmarks/speed.py`` times it alone).

``make_step(backend, batch_size, image_size)`` returns a function doing one training step on a
fresh uint8 batch, data preparation included.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image


def resize_per_sample(images_u8: np.ndarray, size: int) -> np.ndarray:
    """The chapter's pipeline: PIL bilinear resize of each image, then scale to [0, 1]; NCHW float32."""
    out = np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in images_u8])
    return (out.astype(np.float32) / 255.0)[:, None]


def resize_batch_tf(images_u8: np.ndarray, size: int):
    """d2l's FashionMNIST for TensorFlow: scale to [0, 1], then resize the whole batch; NHWC float32 tensor."""
    import tensorflow as tf
    return tf.image.resize_with_pad(tf.expand_dims(images_u8, axis=3) / 255, size, size)


def _torch_step(batch_size: int, image_size: int) -> Callable:
    import torch
    from torch import nn

    def nin_block(out_channels, kernel_size, strides, padding):
        return nn.Sequential(
            nn.LazyConv2d(out_channels, kernel_size, strides, padding), nn.ReLU(),
            nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU(),
            nn.LazyConv2d(out_channels, kernel_size=1), nn.ReLU())

    net = nn.Sequential(
        nin_block(96, kernel_size=11, strides=4, padding=0), nn.MaxPool2d(3, stride=2),
        nin_block(256, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
        nin_block(384, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5), nin_block(10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    net(torch.zeros(1, 1, image_size, image_size))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    loss_fn = nn.CrossEntropyLoss()

    def step(images_u8, labels):
        X = torch.from_numpy(resize_per_sample(images_u8, image_size))
        loss = loss_fn(net(X), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def _mxnet_step(batch_size: int, image_size: int) -> Callable:
    import numpy
    if "bool" not in numpy.__dict__:
        numpy.bool = numpy.bool_
    from mxnet import autograd, gluon, init, np, npx
    from mxnet.gluon import nn
    npx.set_np()

    def nin_block(num_channels, kernel_size, strides, padding):
        blk = nn.Sequential()
        blk.add(nn.Conv2D(num_channels, kernel_size, strides, padding, activation='relu'),
                nn.Conv2D(num_channels, kernel_size=1, activation='relu'),
                nn.Conv2D(num_channels, kernel_size=1, activation='relu'))
        return blk

    net = nn.Sequential()
    net.add(nin_block(96, kernel_size=11, strides=4, padding=0), nn.MaxPool2D(pool_size=3, strides=2),
            nin_block(256, kernel_size=5, strides=1, padding=2), nn.MaxPool2D(pool_size=3, strides=2),
            nin_block(384, kernel_size=3, strides=1, padding=1), nn.MaxPool2D(pool_size=3, strides=2),
            nn.Dropout(0.5), nin_block(10, kernel_size=3, strides=1, padding=1),
            nn.GlobalAvgPool2D(), nn.Flatten())
    net.initialize(init.Xavier())
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.05})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def step(images_u8, labels):
        X = np.array(resize_per_sample(images_u8, image_size))
        y = np.array(labels)
        with autograd.record():
            loss = loss_fn(net(X), y)
        loss.backward()
        trainer.step(len(labels))
        return float(loss.mean())
    return step


def _tf_step(batch_size: int, image_size: int) -> Callable:
    import os
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    def nin_block(out_channels, kernel_size, strides, padding):
        return tf.keras.models.Sequential([
            tf.keras.layers.Conv2D(out_channels, kernel_size, strides=strides, padding=padding),
            tf.keras.layers.Activation('relu'),
            tf.keras.layers.Conv2D(out_channels, 1), tf.keras.layers.Activation('relu'),
            tf.keras.layers.Conv2D(out_channels, 1), tf.keras.layers.Activation('relu')])

    net = tf.keras.models.Sequential([
        nin_block(96, kernel_size=11, strides=4, padding='valid'), tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
        nin_block(256, kernel_size=5, strides=1, padding='same'), tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
        nin_block(384, kernel_size=3, strides=1, padding='same'), tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
        tf.keras.layers.Dropout(0.5), nin_block(10, kernel_size=3, strides=1, padding='same'),
        tf.keras.layers.GlobalAvgPool2D(), tf.keras.layers.Flatten()])
    opt = tf.keras.optimizers.SGD(0.05)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(images_u8, labels):
        X = resize_batch_tf(images_u8, image_size)
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, net(X))  # d2l's trainer: eager, no training=True
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(grads, net.trainable_variables))
        return float(loss)
    return step


def _jax_step(batch_size: int, image_size: int) -> Callable:
    """D2L's JAX NiN: Flax linen, ``optax.sgd``, the loss and update in one ``jax.jit`` step (d2l's Trainer
    jits its ``training_step``).  d2l's JAX loader resizes with TensorFlow (``tf.image.resize_with_pad``);
    this one resizes per sample with PIL, as for PyTorch and MXNet, so it runs where TensorFlow is not
    installed (the GPU machines)."""
    from functools import partial

    import jax
    import jax.numpy as jnp
    import optax
    from flax import linen as nn

    def nin_block(out_channels, kernel_size, strides, padding):
        return nn.Sequential([
            nn.Conv(out_channels, kernel_size, strides, padding), nn.relu,
            nn.Conv(out_channels, kernel_size=(1, 1)), nn.relu,
            nn.Conv(out_channels, kernel_size=(1, 1)), nn.relu])

    class NiN(nn.Module):
        num_classes: int = 10
        training: bool = True

        def setup(self):
            self.net = nn.Sequential([
                nin_block(96, kernel_size=(11, 11), strides=(4, 4), padding=(0, 0)),
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                nin_block(256, kernel_size=(5, 5), strides=(1, 1), padding=(2, 2)),
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                nin_block(384, kernel_size=(3, 3), strides=(1, 1), padding=(1, 1)),
                lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                nn.Dropout(0.5, deterministic=not self.training),
                nin_block(self.num_classes, kernel_size=(3, 3), strides=1, padding=(1, 1)),
                lambda x: x.mean((1, 2)),  # global average pooling
                lambda x: x.reshape((x.shape[0], -1))])  # flatten

        def __call__(self, X):
            return self.net(X)

    net = NiN()
    key = jax.random.PRNGKey(0)
    params = net.init({"params": key, "dropout": key}, jnp.zeros((1, image_size, image_size, 1)))["params"]
    opt = optax.sgd(0.05)
    state = [params, opt.init(params), key]

    @partial(jax.jit, donate_argnums=(0, 1))
    def train(params, opt_state, X, y, key):
        def loss_fn(p):
            logits = net.apply({"params": p}, X, rngs={"dropout": key})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    def step(images_u8, labels):
        X = jnp.asarray(resize_per_sample(images_u8, image_size).transpose(0, 2, 3, 1))  # NHWC
        state[2], key = jax.random.split(state[2])
        state[0], state[1], loss = train(state[0], state[1], X, jnp.asarray(labels), key)
        return float(loss)
    return step


STEPS = {"torch": _torch_step, "mxnet": _mxnet_step, "tf": _tf_step, "jax": _jax_step}


def prepare_batch(backend: str, images_u8: np.ndarray, image_size: int):
    """The chapter's input pipeline alone for one batch (what each step above starts with)."""
    return resize_batch_tf(images_u8, image_size) if backend == "tf" else resize_per_sample(images_u8, image_size)


def make_step(backend: str, batch_size: int, image_size: int) -> Callable:
    """One chapter-style training step ``step(images_u8 (N,28,28), labels int64) -> loss``."""
    return STEPS[backend](batch_size, image_size)
