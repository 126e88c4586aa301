"""Training recipes as data, and the learning-rate schedules they use (framework-free).

A recipe fills the settings ``nin train``/``fit`` is not given: an explicit option always wins over the
recipe's value.  ``chapter`` is the default of both, D2L §8.3's own setting; ``quick-nesterov`` is the one that
reaches 0.90 on a CPU in minutes; ``quick`` and ``quick-b32`` are its plain-SGD counterparts (the shipped weights
are ``quick``'s).  The comment above each recipe and docs/results.md give the measurements each deviation rests
on.

The learning rate of SGD step ``t`` (0-based, over the whole run) is a function of ``t``, the run's total
number of steps and the recipe only (``lr_at``), so a resumed run takes the same steps as an uninterrupted one.
"""
from __future__ import annotations

import math
from typing import Dict

SCHEDULES = ("constant", "cosine")

# the settings a recipe may fix; every other fit argument (device, precision, seed, limits, ...) is the caller's
RECIPE_KEYS = ("epochs", "batch_size", "lr", "image_size", "init", "schedule", "warmup", "momentum", "nesterov")

RECIPES: Dict[str, dict] = {
    # D2L §8.3: SGD lr 0.05 (the PyTorch text; the book's figure used 0.1), batch 128, 10 epochs, 224x224, Xavier
    "chapter": dict(epochs=10, batch_size=128, lr=0.05, image_size=224, init="xavier", schedule="constant",
                    warmup=0.0, momentum=0.0, nesterov=False),
    # minutes on a CPU: 67x67 (the smallest size the chapter's network takes), kaiming-alive init (He-normal with
    # no class starting dead), the chapter's lr 0.05 after a half-epoch linear warm-up, decayed to 0 along a
    # cosine over 10 epochs; docs/results.md gives the runs behind each choice
    "quick": dict(epochs=10, batch_size=128, lr=0.05, image_size=67, init="kaiming-alive", schedule="cosine",
                  warmup=0.5, momentum=0.0, nesterov=False),
    # the quick recipe for a CPU without bf16 (fp32 only): what reaching 0.90 needs is SGD steps, not images, so
    # batch 32 for 4 epochs (7,500 steps, 240,000 images, 40% of quick's; docs/results.md); the other settings
    # are quick's
    "quick-b32": dict(epochs=4, batch_size=32, lr=0.05, image_size=67, init="kaiming-alive", schedule="cosine",
                      warmup=0.5, momentum=0.0, nesterov=False),
    # the CPU recipe `make train` runs: quick's 67 px, kaiming-alive init, half-epoch warm-up and cosine, with SGD's
    # Nesterov momentum 0.9 at batch 64 and lr 0.015 for 3 epochs (180,000 images, 30% of quick's, 75% of
    # quick-b32's): momentum lets each step move further, so 0.90 needs fewer images (docs/results.md gives each
    # setting tried and the images it needed)
    "quick-nesterov": dict(epochs=3, batch_size=64, lr=0.015, image_size=67, init="kaiming-alive", schedule="cosine",
                           warmup=0.5, momentum=0.9, nesterov=True),
}
DEFAULT_RECIPE = "chapter"
CPU_RECIPE = "quick-nesterov"  # what `make train` runs on a CPU (any kind: bf16 where native, else fp32)


def for_this_machine(gpu: bool) -> str:
    """The recipe ``make train`` runs: the chapter's on a GPU, ``CPU_RECIPE`` on a CPU (it computes bf16 where
    the CPU does natively, AVX512-BF16 or AMX, else fp32: ``precision="auto"``)."""
    return "chapter" if gpu else CPU_RECIPE


def check_recipe(name) -> dict:
    """The settings of recipe ``name``; a ValueError naming the recipes for anything else."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"expected recipe to be one of {', '.join(RECIPES)}, got {name!r}")
    return dict(RECIPES[name])


def resolve(recipe: str, **given) -> dict:
    """The recipe's settings with every ``given`` value that is not None in their place."""
    settings = check_recipe(recipe)
    settings.update({k: v for k, v in given.items() if v is not None})
    return settings


def warmup_steps(warmup: float, steps_per_epoch: int) -> int:
    """Steps of linear warm-up for ``warmup`` epochs."""
    return int(round(warmup * steps_per_epoch))


def lr_at(schedule: str, peak: float, step: int, total_steps: int, warmup: int = 0) -> float:
    """The learning rate of SGD step ``step`` (0-based) of ``total_steps``.

    ``constant``: ``peak`` throughout (after the warm-up, if any).  ``cosine``: from ``peak`` down to 0 along
    half a cosine over the steps after the warm-up.  A warm-up of ``warmup`` steps rises linearly to ``peak``
    (step 0 gets ``peak / warmup``).
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    span = max(total_steps - warmup, 1)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def describe(schedule: str, peak: float, warmup: float, momentum: float = 0.0, nesterov: bool = False) -> str:
    """'lr 0.1 (warm-up 0.5 epoch, cosine to 0), Nesterov momentum 0.9' for the run's first line."""
    parts = ([f"warm-up {warmup:g} epoch"] if warmup else []) + (["cosine to 0"] if schedule == "cosine" else [])
    text = f"lr {peak:g}" + (f" ({', '.join(parts)})" if parts else "")
    return text + (f", {'Nesterov ' if nesterov else ''}momentum {momentum:g}" if momentum else "")
