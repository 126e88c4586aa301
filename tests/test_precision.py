"""bf16 against fp32, on every machine: both branches of ``precision="auto"`` are forced here, and
bf16 runs (natively, or emulated and slowly where the CPU lacks AVX512-BF16: a few steps at 67 px are cheap).

What bf16 is held to, and why (``precision.py``: bfloat16 compute, float32 master weights, loss and metrics):

- Evaluation: at the same weights, the bf16 loss is within 5% of the fp32 one.  bf16 keeps 8 significant bits
  (relative rounding 2**-9 = 0.2%); the logits go through 12 convolutions, so a few tenths of a percent
  up to a few percent (measured: 0.07%), far from 5%, which a wrong cast (a float16 overflow, a
  dropped layer, an integer) would exceed.
- Training: from the same weights and dropout seeds, the loss decrease over ``STEPS`` SGD steps in bf16 is
  within 50% of fp32's.  The first-order decrease of a step is ``lr * g_bf16 . g_fp32``; where
  ``|g_bf16 - g_fp32| <= r |g_fp32|`` it lies within ``(1 +- r)`` of fp32's.  At these weights r is at most
  0.31 in every layer, the same in PyTorch and TensorFlow (ReLU masks and max-pool choices that bf16 rounding
  flips), so 0.5 leaves room for the steps' second-order terms; a bf16 path that does not learn, or learns
  from the wrong gradient, falls outside.
"""
import numpy as np
import pytest

from conftest import training_of
from common.engine import data, registry
from common.util import machine

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
    ratio = (start32 - end16) / (start32 - end32)
    assert 0.5 <= ratio <= 1.5, f"bf16 lowered the loss {ratio:.2f} times as much as fp32 ({start32}, {end32}, {end16})"
    # and bf16's own evaluation of its weights agrees with fp32's
    assert abs(bf16.eval_step(images, labels, SIZE)[0] - end16) <= 0.05 * end16
