"""bf16 against fp32, on every machine: both branches of ``precision="auto"`` are forced here, and
bf16 runs (natively, or emulated and slowly where the CPU lacks AVX512-BF16: a few steps at 67 px are cheap).

What bf16 is held to, and why (``precision.py``: bfloat16 compute, float32 master weights, loss and metrics).
bf16 keeps 8 significant bits: a rounding moves a value by at most ``U`` = 2**-8 = 0.39 % of it.  A product of
two rounded factors is off by up to 2U, and a convolution sums such products in float32, so its output carries
about U of its own (random errors average in the sum) plus what its inputs brought: after the network's 12
convolutions, errors that add at random give a few U (about sqrt(12) U), ones that add up in the same direction
as much as 12 x 2U.  Every bound below is ``MARGIN`` = 4 times the worst of eight measurements on the four
images the tests use, at Kaiming initialisation, on a 2-core EPYC with AVX512-BF16: PyTorch 2.13 with oneDNN's
bf16 kernels and with its own (ONEDNN_MAX_CPU_ISA=AVX2: what an AVX2-only CPU runs), TensorFlow 2.17 and 2.21
with oneDNN and with Eigen (TF_ENABLE_ONEDNN_OPTS=0: what an AVX2-only CPU runs), JAX 0.5 and 0.10 (XLA
converts bf16 convolutions to float32 on any CPU).  The update and start-loss bounds hold for seven further
batches of four as well (another batch, like another CPU's summation order, rounds other values across a
decision).

- Evaluation: at the same weights, the bf16 loss is within ``START_LOSS`` = 4 x 0.26 U (0.41 %) of the fp32 one;
  after ``STEPS`` steps of bf16 training, its own evaluation of its weights within ``END_LOSS`` = 4 x 1.2 U
  (1.9 %) of fp32's evaluation of the same weights (measured 0.26 U and 1.17 U at worst, the latter with
  Eigen, 0.56 U at most elsewhere: trained weights give larger logits).  A dropped layer is beyond them: the
  identity in place of one 1x1 convolution changes this loss by 0.5 % to 12 % (six of the eight such layers;
  those of the second block by 0.1-0.15 %, within rounding, where the update check below finds them), while
  a bound of 5 % let six of the eight through.
- One step: from the same weights and dropout masks, the bf16 SGD update (``lr * g_bf16``) is held against
  fp32's, in every parameter tensor and over the whole model, by its size (the ratio of the norms) and its
  direction (the cosine of the angle between the two).  Rounding alone changes an update by a few U (measured
  0.1-1.3 % in the output block).  Rounding also flips decisions: a ReLU whose input is within rounding of zero,
  the winner of a max-pool window with a near tie (39-93 of each of the first block's 86,400 ReLU inputs at this
  batch).  Each flip swaps one position's contribution to a gradient for a comparable one: it turns the
  update, the more the more such layers the backward pass has crossed, but hardly changes its size.  Measured
  at worst: per tensor a cosine of 0.906 (1 - 0.094, the first block's) and a norm ratio 0.11 off 1 (Eigen,
  the first block's update 11 % short; at most 0.05 elsewhere); over the whole model a cosine of 0.980 and a
  norm ratio 0.007 off 1.  Bounds: per tensor ``TENSOR_COSINE`` = 1 - 4 x 0.094 and ``TENSOR_RATIO`` = 4 x 0.11;
  over the model ``WHOLE_COSINE`` = 1 - 4 x 0.02 and ``WHOLE_RATIO`` = 0.1 (4 x 0.007 = 0.03 would sit below
  the 0.06 the other batches reached: one batch's flips in a large layer move the whole).  A gradient scaled by
  0.5 has a norm ratio of 0.5, five times the whole bound, and beyond the per-tensor one; a layer whose update
  is dropped has 0 there; one of the wrong sign a cosine of -1, a random one about 0.  (The relative
  difference |u_bf16 - u_fp32| / |u_fp32| mixes the two: the flips alone take it to 0.43 in a tensor, so no
  bound on it with a margin stops a gradient scaled by 0.5; the whole bounds imply it is at most 0.43.)
- Training: over ``STEPS`` steps both precisions stay finite and lower the loss.  Their trajectories are not
  held to each other: at this learning rate on four images a step can raise the loss by a fifth, so small
  differences grow (measured: fp32 from 8.76 to 4.65 and bf16 to 4.25 in TensorFlow, 7.63 and 7.81 in
  PyTorch), and a ratio of the two decreases measures that chaos, not bf16.  Each must lower the loss
  by ``LEARNED`` = 5 % of its start, half the least measured: fp32 lowered it by 13 % (PyTorch) to 47 %
  (TensorFlow), bf16 by 11 % to 52 %; a bf16 path that does not learn keeps its start's loss, within
  ``START_LOSS`` (0.4 %) of fp32's.
"""
import numpy as np
import pytest

from conftest import BF16, load_backend, training_of
from nin_common.engine import data, registry
from nin_common.util import machine

SIZE = 67
STEPS, LR = 10, 0.03
U = 2.0 ** -8  # bf16's unit roundoff (8 significant bits, rounding to nearest)
MARGIN = 4  # each bound over the worst measured (see above)
START_LOSS = MARGIN * 0.26 * U  # relative difference of the losses at the same weights
END_LOSS = MARGIN * 1.2 * U  # ... after STEPS steps
TENSOR_COSINE, TENSOR_RATIO = 1 - MARGIN * 0.094, MARGIN * 0.11  # one step's update, per parameter tensor
WHOLE_COSINE, WHOLE_RATIO = 1 - MARGIN * 0.02, 0.1  # ... over the whole model
LEARNED = 0.05  # the least loss decrease over STEPS steps that counts as learning (see above)



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


@pytest.fixture(params=BF16)
def bf16_backend(request):
    """Each backend that trains in bf16 (``test_bf16_is_offered_by_exactly_the_bf16_backends`` holds the list)."""
    return load_backend(request.param)


def test_bf16_is_offered_by_exactly_the_bf16_backends(backend):
    """The bf16 tests below exist for the backends in ``BF16``; every other backend refuses bf16 saying why
    (``offers_bf16`` checks the message)."""
    assert offers_bf16(backend) is (backend.BACKEND in BF16)


def size_and_direction(new, reference):
    """(cosine, norm ratio) of ``new`` against ``reference`` (a cosine of 0 where ``new`` is zero)."""
    new, reference = np.ravel(new).astype(np.float64), np.ravel(reference).astype(np.float64)
    norm_new, norm_ref = np.linalg.norm(new), np.linalg.norm(reference)
    return (float(new @ reference / (norm_new * norm_ref)) if norm_new > 0 else 0.0), float(norm_new / norm_ref)


def update_agreement(backend, images, labels):
    """The bf16 SGD update against fp32's, one step from the same weights and dropout seeds: (cosine, norm
    ratio) over the whole model, and per parameter tensor (those fp32 moves)."""
    updates = {}
    for precision in ("fp32", "bf16"):
        t = trainer(backend, precision)
        before = backend.export_weights(t.model)
        t.reseed(1)
        t.train_step(images, labels, SIZE)
        updates[precision] = {k: v - before[k] for k, v in backend.export_weights(t.model).items()}
    fp32, bf16 = updates["fp32"], updates["bf16"]
    per_tensor = {k: size_and_direction(bf16[k], fp32[k]) for k in fp32 if np.linalg.norm(fp32[k]) > 0}
    whole = size_and_direction(np.concatenate([bf16[k].ravel() for k in fp32]),
                               np.concatenate([fp32[k].ravel() for k in fp32]))
    return whole, per_tensor


def test_bf16_step_follows_the_fp32_gradient(bf16_backend):
    images, labels = batch()
    (cosine, ratio), per_tensor = update_agreement(bf16_backend, images, labels)
    assert abs(ratio - 1) <= WHOLE_RATIO, f"the bf16 update is {ratio:.3f} times the size of fp32's"
    assert cosine >= WHOLE_COSINE, f"the bf16 update is at a cosine of {cosine:.3f} to fp32's"
    worst = max(per_tensor, key=lambda k: abs(per_tensor[k][1] - 1))
    assert abs(per_tensor[worst][1] - 1) <= TENSOR_RATIO, \
        f"{worst}: the bf16 update is {per_tensor[worst][1]:.2f} times the size of fp32's"
    worst = min(per_tensor, key=lambda k: per_tensor[k][0])
    assert per_tensor[worst][0] >= TENSOR_COSINE, \
        f"{worst}: the bf16 update is at a cosine of {per_tensor[worst][0]:.2f} to fp32's"


def test_bf16_training_and_evaluation_agree_with_fp32(bf16_backend):
    backend = bf16_backend
    images, labels = batch()
    fp32, bf16 = trainer(backend, "fp32"), trainer(backend, "bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    start32, start16 = fp32.eval_step(images, labels, SIZE)[0], bf16.eval_step(images, labels, SIZE)[0]
    assert abs(start16 - start32) <= START_LOSS * start32, (start32, start16)
    for t in (fp32, bf16):
        t.reseed(1)
        losses = [t.train_step(images, labels, SIZE)[0] for _ in range(STEPS)]
        assert np.all(np.isfinite(losses)), (t.precision, losses)
    # both trained models evaluated the same way, in fp32
    judge = trainer(backend, "fp32")
    backend.import_weights(judge.model, backend.export_weights(bf16.model))
    end32, end16 = fp32.eval_step(images, labels, SIZE)[0], judge.eval_step(images, labels, SIZE)[0]
    assert start32 - end32 > LEARNED * start32, (start32, end32)  # fp32 learned: the comparison means something
    assert start32 - end16 > LEARNED * start32, f"bf16 did not learn: the loss went from {start32} to {end16}"
    # and bf16's own evaluation of its weights agrees with fp32's
    own = bf16.eval_step(images, labels, SIZE)[0]
    assert abs(own - end16) <= END_LOSS * end16, (end16, own)
