"""Dead channels of the last block, at the start and at the end of training, per run; appends rows.

Not a test.  For each run folder (``nin train --out``, e.g. the exercise study's), the block the classes are read
from (the class scores' block, or the block before a fully connected head) is evaluated on the first
``--images`` Fashion-MNIST test images, resized as training resized them, in float64 (``common.arch.reference``,
dropout off): a channel that is <= 0 on every image is dead (its ReLU passes no gradient, and whatever the
classes need from it is lost).  Counted for the run's initial weights (drawn again from its seed and init, as
training drew them) and for its last checkpoint.

    python benchmarks/dead_channels.py /work/runs/study/gradual-torch-quick-b32-s0 ...
    python benchmarks/dead_channels.py --runs /work/runs/study            # every run folder under it

One JSON line per run is appended to ``benchmarks/results/dead_channels.jsonl``.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from common.arch import spec as S  # noqa: E402
from common.arch.reference import layer_outputs, resize_bilinear  # noqa: E402
from common.arch.variants import build_spec  # noqa: E402
from common.arch.weights import initial_weights, load_npz  # noqa: E402
from common.engine import data, runs  # noqa: E402
from common.util.machine import git_commit  # noqa: E402

RESULTS = os.path.join(HERE, "results", "dead_channels.jsonl")


def last_block(spec: S.NetSpec) -> int:
    return max(i for i, layer in enumerate(spec.layers) if isinstance(layer, S.Block))


def dead(spec: S.NetSpec, weights, x: np.ndarray) -> tuple:
    """(dead channels, channels) of the last block on the images ``x`` (NCHW, float64, at the trained size)."""
    out = layer_outputs(spec, weights, x)[last_block(spec)]
    return int((out.max(axis=(0, 2, 3)) <= 0).sum()), int(out.shape[1])


def one_run(folder: str, images: np.ndarray) -> dict:
    ckpt = runs.find_checkpoint(folder)
    state = runs.read_state(ckpt)
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="*", help="run folders")
    p.add_argument("--runs", help="a folder of run folders: each one under it with a checkpoint")
    p.add_argument("--images", type=int, default=1000, help="test images the channels are looked at on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args(argv)
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
