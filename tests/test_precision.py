"""bf16 against fp32, on every machine: both branches of ``precision="auto"`` are forced here, and
bf16 runs (natively, or emulated and slowly where the CPU lacks AVX512-BF16: a few steps at 67 px are cheap).

What bf16 is held to, and why (``precision.py``: bfloat16 compute, float32 master weights, loss and metrics):

- Evaluation: at the same weights, the bf16 loss is within 5% of the fp32 one.  bf16 keeps 8 significant bits
  (relative rounding 2**-9 = 0.2%); the logits go through 12 convolutions, so a few tenths of a percent
  up to a few percent (measured: 0.07%), far from 5%, which a wrong cast (a float16 overflow, a
  dropped layer, an integer) would exceed.
- One step: from the same weights and dropout masks, the bf16 SGD update (``lr * g_bf16``) is held against
  fp32's (``lr * g_fp32``), element by element through the norm of the difference: over the whole model within
  half of the fp32 update's norm, and in every layer within three quarters of it.  Measured on a 4-image batch
  at kaiming init: 0.12 (PyTorch), 0.20 (TensorFlow), 0.17 (JAX) over the model, at most 0.24, 0.42 and 0.39 in a
  layer (the first block's, where the backward pass has crossed every layer's ReLU masks and max-pool choices
  that bf16 rounding flips).  A bf16 path that learns from the wrong gradient (one dropped, zero, random or of
  the wrong sign in some layer) is at 1 or beyond in that layer.
- Training: over ``STEPS`` steps both precisions stay finite and lower the loss.  Their trajectories are not
  held to each other: at this learning rate on four images a step can raise the loss by a fifth, so small
  differences grow (measured in TensorFlow: fp32 from 8.76 to 4.65, bf16 to 6.93), and a ratio of the two
  decreases measures that chaos, not bf16.
"""
import numpy as np
import pytest

from conftest import training_of
from nin_common.engine import data, registry
from nin_common.util import machine

SIZE = 67
STEPS, LR = 10, 0.03



def trainer(backend, precision, lr=LR):
    return training_of(backend).Trainer(training_of(backend).build_model("cpu", seed=0, init="kaiming", image_size=SIZE), lr,
                                 "cpu", precision)


def offers_bf16(backend) -> bool:
    """Whether the backend trains in bf16; one that does not must say why, and its ``auto`` is fp32."""
    try:
        trainer(backend, "bf16")
        return True
    except ValueError as err:
        assert f"precision bf16 is not available in {registry.framework(backend.BACKEND)}: " in str(err)
        return False


def batch(n=4):
    """Four Fashion-MNIST training images (skipped with the reason where the data is missing, see conftest)."""
    split = data.load("train", limit=n)
    return split.images, split.labels


@pytest.mark.parametrize("flags,native", [({"avx2", "avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True),
                                          ({"avx2", "fma"}, False), (set(), False)])
def test_cpu_bf16_detection_both_ways(monkeypatch, flags, native):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    assert machine.cpu_bf16() is native


@pytest.mark.parametrize("native", [True, False], ids=["bf16-cpu", "avx2-cpu"])
def test_auto_follows_the_cpu_both_ways(backend, monkeypatch, native):
    """The CPU's flags are faked, so both branches run on every machine."""
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16"} if native else {"avx2"}))
    auto = trainer(backend, "auto")
    # whether the backend computes bf16 natively on this (faked) CPU: torch and TF follow the flags; JAX never
    # does on a CPU (XLA converts bf16 convolutions to float32 there; nin_jax.training.bf16_native)
    follows = training_of(backend).bf16_native(auto.device)
    if not native:
        assert not follows, "no backend may call bf16 native on a CPU without AVX512-BF16/AMX"
    assert auto.precision == ("bf16" if native and follows and offers_bf16(backend) else "fp32")
    assert trainer(backend, "fp32").precision == "fp32"


def test_some_backend_follows_the_cpu_flags(all_backends, monkeypatch):
    """The flag-forcing above is not vacuous: at least one backend's auto flips with the CPU's bf16 flags."""
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert any(trainer(b, "auto").precision == "bf16" for b in all_backends)


def relative_differences(backend, images, labels):
    """|update_bf16 - update_fp32| / |update_fp32| (L2 norms) of one SGD step from the same weights and dropout
    seeds: over the whole model, and per layer."""
    updates = {}
    for precision in ("fp32", "bf16"):
        t = trainer(backend, precision)
        before = backend.export_weights(t.model)
        t.reseed(1)
        t.train_step(images, labels, SIZE)
        updates[precision] = {k: v - before[k] for k, v in backend.export_weights(t.model).items()}
    fp32, bf16 = updates["fp32"], updates["bf16"]
    per_layer = {k: float(np.linalg.norm(bf16[k] - fp32[k]) / np.linalg.norm(fp32[k])) for k in fp32
                 if np.linalg.norm(fp32[k]) > 0}
    whole = np.linalg.norm(np.concatenate([(bf16[k] - fp32[k]).ravel() for k in fp32])) / \
        np.linalg.norm(np.concatenate([fp32[k].ravel() for k in fp32]))
    return float(whole), per_layer


def test_bf16_step_follows_the_fp32_gradient(backend):
    if not offers_bf16(backend):
        return  # offers_bf16 checked the refusal's message
    images, labels = batch()
    whole, per_layer = relative_differences(backend, images, labels)
    assert whole <= 0.5, f"the bf16 update differs from fp32's by {whole:.2f} of its norm"
    worst = max(per_layer, key=per_layer.get)
    assert per_layer[worst] <= 0.75, f"{worst}: the bf16 update differs from fp32's by {per_layer[worst]:.2f}"


def test_bf16_training_and_evaluation_agree_with_fp32(backend):
    if not offers_bf16(backend):
        return  # offers_bf16 checked the refusal's message
    images, labels = batch()
    fp32, bf16 = trainer(backend, "fp32"), trainer(backend, "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    start32, start16 = fp32.eval_step(images, labels, SIZE)[0], bf16.eval_step(images, labels, SIZE)[0]
    assert abs(start16 - start32) <= 0.05 * start32, (start32, start16)
    for t in (fp32, bf16):
        t.reseed(1)
        losses = [t.train_step(images, labels, SIZE)[0] for _ in range(STEPS)]
        assert np.all(np.isfinite(losses)), (t.precision, losses)
    # both trained models evaluated the same way, in fp32
    judge = trainer(backend, "fp32")
    backend.import_weights(judge.model, backend.export_weights(bf16.model))
    end32, end16 = fp32.eval_step(images, labels, SIZE)[0], judge.eval_step(images, labels, SIZE)[0]
    assert start32 - end32 > 0.1 * start32, (start32, end32)  # fp32 learned: the comparison means something
    assert start32 - end16 > 0.1 * start32, f"bf16 did not learn: the loss went from {start32} to {end16}"
    # and bf16's own evaluation of its weights agrees with fp32's
    assert abs(bf16.eval_step(images, labels, SIZE)[0] - end16) <= 0.05 * end16
