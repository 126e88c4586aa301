"""Dead channels of the last block, at the start and at the end of training, per run, or traced along training.

Not a test.  For each run folder (``nin train --out``, e.g. the exercise study's), the block the classes are read
from (the class scores' block, or the block before a fully connected head) is evaluated on the first
``--images`` Fashion-MNIST test images, resized as training resized them, in float64 (``nin_common.arch.reference``,
dropout off): a channel that is <= 0 on every image is dead (its ReLU passes no gradient, and whatever the
classes need from it is lost).  Counted for the run's initial weights (drawn again from its seed and init, as
training drew them) and for its last checkpoint.

    python -m benchmarks.dead_channels /work/runs/study/gradual-torch-quick-b32-s0 ...
    python -m benchmarks.dead_channels --runs /work/runs/study            # every run folder under it

``--trace VARIANT[,VARIANT...]`` follows the count along training instead: it trains the variant as ``nin train``
does (the same recipe, seed, init, batch order, learning rate per step and dropout seeds, through the same
epoch loop) and counts after SGD steps 0, 10, 25, 50, 100, then every 100, and at the end of each traced epoch.
On a CPU the steps are those of the ``nin train`` run with the same settings, so the trace of epoch 1 is the
first epoch of that run (the default: where the warm-up decides which channels live):

    python -m benchmarks.dead_channels --trace chapter,gradual --seed 0 [--init kaiming-alive-all]

``--at-start VARIANT[,VARIANT...]`` counts only the initial weights, drawn from each of ``--seeds`` with ``--init``
at ``--image-size`` (no training; how often an init starts the class block with dead channels):

    python -m benchmarks.dead_channels --at-start chapter,gradual --init kaiming --seeds $(seq -s, 0 19) --images 256

One JSON line per run (or per trace, or per variant counted at the start) is appended to ``benchmarks/results/dead_channels.jsonl``.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os

import numpy as np

from nin_common.arch import spec as S
from nin_common.arch.reference import layer_outputs, resize_bilinear
from nin_common.arch.variants import build_spec
from nin_common.arch.weights import initial_weights, load_npz
from nin_common.cli import options
from nin_common.engine import checkpoint, data, recipes, registry
from nin_common.util.machine import describe, git_commit, load_average, thread_defaults

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "dead_channels.jsonl")


def last_block(spec: S.NetSpec) -> int:
    return max(i for i, layer in enumerate(spec.layers) if isinstance(layer, S.Block))


def dead(spec: S.NetSpec, weights, x: np.ndarray) -> tuple:
    """(dead channels, channels) of the last block on the images ``x`` (NCHW, float64, at the trained size)."""
    out = layer_outputs(spec, weights, x)[last_block(spec)]
    return int((out.max(axis=(0, 2, 3)) <= 0).sum()), int(out.shape[1])


def one_run(folder: str, images: np.ndarray) -> dict:
    ckpt = checkpoint.find_checkpoint(folder)
    state = checkpoint.read_state(ckpt)
    settings = state["settings"]
    spec = build_spec(settings["variant"])
    x = resize_bilinear(images, settings["image_size"])
    start, channels = dead(spec, initial_weights(spec, settings["seed"], settings["init"], settings["image_size"]), x)
    end, _ = dead(spec, load_npz(os.path.join(ckpt, state["canonical"]))[0], x)
    return dict(variant=settings["variant"], backend=state["backend"], seed=settings["seed"], init=settings["init"],
                recipe=settings.get("recipe"), image_size=settings["image_size"], epoch=state["epoch"],
                epochs=settings["epochs"], channels=channels, dead_start=start, dead_end=end, images=len(images),
                folder=os.path.basename(os.path.normpath(folder)), commit=git_commit(ROOT),
                date=datetime.datetime.now().isoformat(timespec="seconds"))


TRACE_STEPS = (0, 10, 25, 50)


def probe_at(step: int, every: int = 100) -> bool:
    """Whether the count is taken after SGD step ``step`` (0: the initial weights)."""
    return step in TRACE_STEPS or step % every == 0


class Probed:
    """The trainer of a traced run: every call goes to the backend's Trainer; after the SGD steps that
    ``probe_at`` names, the last block's dead channels are counted on the weights the step left."""

    def __init__(self, trainer, count, step: int = 0):
        self.inner, self.count, self.step, self.trace = trainer, count, step, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_step(self, images, labels, image_size):
        out = self.inner.train_step(images, labels, image_size)
        self.step += 1
        if probe_at(self.step):
            self.trace.append((self.step, self.count()))
        return out


def _stop(step: int, loss: float, batch: int, n_batches: int) -> None:
    raise SystemExit(f"dead_channels: the loss became {loss} at step {step}")


def trace(variant: str, args, images: np.ndarray) -> dict:
    """Train ``variant`` for ``args.epochs_traced`` epochs of its recipe, counting dead channels on the way."""
    from nin_common.engine.training import epoch_seed, make_trainer, train_epoch  # imports no framework
    impl, package = registry.part(args.backend, "training"), registry.load(args.backend)
    settings = recipes.resolve(args.recipe, init=args.init, seed=args.seed)
    settings["variant"] = variant
    spec, size = build_spec(variant), settings["image_size"]
    x = resize_bilinear(images, size)
    model = impl.build_model("cpu", lr=settings["lr"], variant=variant, seed=args.seed, init=settings["init"],
                             image_size=size)
    trainer = Probed(make_trainer(args.backend, model, settings["lr"], "cpu", args.precision),
                      lambda: dead(spec, package.export_weights(model), x)[0])
    first, channels = dead(spec, package.export_weights(model), x)
    trainer.trace.append((0, first))
    train = data.load("train", args.data_dir, None, progress=False)
    before, ends, step = load_average(), [], 0
    for epoch in range(1, args.epochs_traced + 1):
        trainer.reseed(epoch_seed(args.seed, epoch))
        loss, acc, seconds, step = train_epoch(trainer, train, settings, epoch, step, False, _stop)
        if trainer.trace[-1][0] != step:
            trainer.trace.append((step, trainer.count()))
        ends.append(dict(epoch=epoch, step=step, dead=trainer.trace[-1][1], train_loss=loss, train_acc=acc,
                         seconds=round(seconds, 1)))
        print(f"{variant}: epoch {epoch}: {ends[-1]['dead']} of {channels} dead; trace {trainer.trace}", flush=True)
    return dict(kind="trace", variant=variant, backend=args.backend, seed=args.seed, init=settings["init"],
                recipe=args.recipe, precision=args.precision, image_size=size, epochs=settings["epochs"],
                epochs_traced=args.epochs_traced, channels=channels, steps=[s for s, _ in trainer.trace],
                dead=[d for _, d in trainer.trace], epoch_ends=ends, images=len(images), load_before=before,
                load_after=load_average(), machine=describe(), commit=git_commit(ROOT),
                date=datetime.datetime.now().isoformat(timespec="seconds"))


def at_start(variant: str, seeds: list, init: str, image_size: int, images: np.ndarray) -> dict:
    """Dead channels of the last block in the initial weights of each seed (no training)."""
    spec, x = build_spec(variant), resize_bilinear(images, image_size)
    counts = [dead(spec, initial_weights(spec, seed, init, image_size), x) for seed in seeds]
    return dict(kind="start", variant=variant, init=init, image_size=image_size, seeds=seeds,
                dead=[d for d, _ in counts], channels=counts[0][1], images=len(images), commit=git_commit(ROOT),
                date=datetime.datetime.now().isoformat(timespec="seconds"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="*", help="run folders")
    p.add_argument("--runs", help="a folder of run folders: each one under it with a checkpoint")
    p.add_argument("--images", type=int, default=1000, help="test images the channels are looked at on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results", default=RESULTS)
    p.add_argument("--trace", help="variants to train and trace (comma list) instead of reading run folders")
    p.add_argument("--backend", default="torch", help="the backend a trace trains in")
    p.add_argument("--recipe", default="quick-b32", help="the recipe a trace trains with")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="an init other than the recipe's")
    p.add_argument("--epochs-traced", type=int, default=1)
    p.add_argument("--at-start", help="variants whose initial weights to count (comma list), for each of --seeds")
    p.add_argument("--seeds", type=options.seed_list, default="0,1,2,3,4,5,6,7,8,9",
                   help="seeds for --at-start (comma list)")
    p.add_argument("--image-size", type=int, default=67, help="the input size for --at-start")
    args = p.parse_args(argv)
    if args.at_start:
        seeds = args.seeds
        test = data.load("test", args.data_dir, args.images, progress=False)
        images = test.images[:, None].astype(np.float64) / 255
        for variant in args.at_start.split(","):
            row = at_start(variant, seeds, args.init or "kaiming-alive", args.image_size, images)
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
            print(f"{variant} ({row['init']}, {args.image_size} px): dead at the start per seed "
                  f"{dict(zip(seeds, row['dead']))} of {row['channels']} ({row['images']} test images)", flush=True)
        return 0
    if args.trace:
        thread_defaults()  # before the first framework import
        test = data.load("test", args.data_dir, args.images, progress=False)
        for variant in args.trace.split(","):
            row = trace(variant, args, test.images[:, None].astype(np.float64) / 255)
            with open(args.results, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
        return 0
    folders = list(args.folders)
    if args.runs:
        folders += sorted(os.path.dirname(os.path.dirname(s))
                          for s in glob.glob(os.path.join(args.runs, "*", "checkpoint", "state.json")))
    if not folders:
        p.error("expected run folders or --runs FOLDER, got none")
    test = data.load("test", args.data_dir, args.images, progress=False)
    images = test.images[:, None].astype(np.float64) / 255
    for folder in folders:
        row = one_run(folder, images)
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        print(f"{row['folder']}: {row['dead_start']} of {row['channels']} channels dead at the start, "
              f"{row['dead_end']} after epoch {row['epoch']} ({row['images']} test images)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
