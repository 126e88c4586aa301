"""Recipes, learning-rate schedules, and a model that learns in every backend (a few hundred real images)."""
import math

import numpy as np
import pytest

from common.engine import data, recipes, training
from test_training import SMALL, fashion_mnist, impl, max_abs_diff, npz_weights  # noqa: F401 (fixture)

# The learning check: LEARN_TRAIN real training images, LEARN_EPOCHS epochs of the quick recipe's schedule at
# the smallest image size, then accuracy on LEARN_VAL test images.  Measured (fp32, seed 0): see
# LEARNED_MEASURED; chance is 0.1, and a network that stopped learning (zero gradients, lr 0, a broken loss or
# optimizer) stays at or below 0.2 (the most frequent class of the LEARN_VAL images is CHANCE_MAX of them).
LEARN = dict(recipe="quick", limit_train=512, limit_val=500, batch_size=32, epochs=6, precision="fp32", seed=0,
             device="cpu", progress=False)
LEARN_THRESHOLD = 0.5
LEARNED_MEASURED = {}  # filled in from the calibration run, per backend


def test_recipes_are_data_and_checked():
    assert recipes.check_recipe("quick") == recipes.RECIPES["quick"]
    assert set(recipes.RECIPES["quick"]) == set(recipes.RECIPE_KEYS) == set(recipes.RECIPES["chapter"])
    with pytest.raises(ValueError, match="expected recipe to be one of chapter, quick, got 'fast'"):
        recipes.check_recipe("fast")
    # a value given wins over the recipe's; None means "the recipe's"
    assert recipes.resolve("quick", lr=0.01, epochs=None) == dict(recipes.RECIPES["quick"], lr=0.01)


def test_learning_rate_schedules():
    total, warm, peak = 100, 10, 0.1
    cosine = [recipes.lr_at("cosine", peak, t, total, warm) for t in range(total)]
    assert cosine[:warm] == pytest.approx([peak * (t + 1) / warm for t in range(warm)])  # linear warm-up
    assert cosine[warm] == peak and all(a > b > 0 for a, b in zip(cosine[warm:], cosine[warm + 1:]))
    assert cosine[-1] < 1e-3 * peak  # down to (almost) 0 at the last step
    assert recipes.lr_at("cosine", peak, warm + 45, total, warm) == pytest.approx(peak / 2)  # half-way: half
    assert [recipes.lr_at("constant", peak, t, total) for t in (0, 50, 99)] == [peak] * 3


def test_explicit_options_win_over_the_recipe(backend):
    rows = impl(backend).fit(recipe="quick", epochs=1, **{k: v for k, v in SMALL.items() if k != "init"})
    quick = recipes.RECIPES["quick"]
    row = rows[0]
    assert (row["recipe"], row["init"], row["lr"], row["schedule"], row["warmup"]) == (
        "quick", quick["init"], quick["lr"], quick["schedule"], quick["warmup"])
    assert (row["image_size"], row["batch_size"], row["epochs"]) == (SMALL["image_size"], SMALL["batch_size"], 1)
    with pytest.raises(ValueError, match="expected schedule to be one of constant, cosine, got 'step'"):
        impl(backend).fit(recipe="quick", schedule="step", **SMALL)
    with pytest.raises(ValueError, match="expected warmup to be a non-negative number of epochs, got -1"):
        impl(backend).fit(recipe="quick", warmup=-1, **SMALL)
    with pytest.raises(ValueError, match="expected recipe to be one of chapter, quick"):
        impl(backend).fit(recipe="fast", **SMALL)


def test_interrupted_cosine_run_resumes_to_the_same_weights(backend, tmp_path, monkeypatch):
    """The schedule is a function of the step: a run stopped after epoch 1 and resumed ends where an
    uninterrupted one does (bit for bit on the CPU)."""
    settings = dict(SMALL, recipe="quick", epochs=2, device="cpu")
    straight = impl(backend).fit(out=str(tmp_path / "a"), **settings)
    evaluate, calls = training.evaluate, []

    def interrupt_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        impl(backend).fit(out=str(tmp_path / "b"), **settings)
    monkeypatch.setattr(training, "evaluate", evaluate)
    resumed = impl(backend).fit(resume=str(tmp_path / "b"), **settings)
    assert max_abs_diff(npz_weights(tmp_path / "a"), npz_weights(tmp_path / "b")) == 0
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in straight]


def test_a_few_hundred_images_are_learned(backend):
    """Catches a model that stopped learning: test accuracy far above chance after a short real training."""
    rows = impl(backend).fit(**LEARN)
    val = data.load("test", limit=LEARN["limit_val"])
    chance_max = np.bincount(val.labels).max() / len(val)
    assert chance_max < 0.2
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_acc"] >= LEARN_THRESHOLD, [round(r["val_acc"], 4) for r in rows]
