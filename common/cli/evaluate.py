"""``nin evaluate``: loss and accuracy of a checkpoint on Fashion-MNIST's 10k test images."""
from __future__ import annotations

import json

from common.cli import options as O
from common.engine import data, registry, runs, training


def add_parser(sub) -> None:
    p = O.subcommand(sub, "evaluate", "loss and accuracy of a checkpoint on the Fashion-MNIST test split")
    O.checkpoint(p)
    O.backend(p, default=None, help="backend(s) to evaluate with (default: the one that wrote the checkpoint; "
                                    "another one loads the canonical weights)")
    O.batch_size(p, default=256)
    O.image_size(p, default=None, help="images are resized to this (default: the size the model was trained at)")
    O.limits(p, train_too=False)
    O.device(p)
    O.data_dir(p)
    O.json_output(p)
    O.progress(p)
    p.set_defaults(run=run)


def run(args) -> int:
    path = O.checkpoint_of(args)
    for name in args.backend or [None]:
        evaluate_one(args, path, name)
    return 0


def evaluate_one(args, path: str, backend) -> None:
    mod, model, image_size = runs.load_checkpoint(path, backend)
    image_size = args.image_size or image_size
    trainer = training.make_trainer(mod.BACKEND, model, model.lr, args.device)
    progress = O.show_progress(args)
    split = data.load("test", args.data_dir, args.limit_val, progress=progress)
    loss, acc, seconds = training.evaluate(trainer, split, args.batch_size, image_size, progress)
    result = dict(checkpoint=str(path), backend=mod.BACKEND, device=trainer.device_name,
                  image_size=image_size, n=len(split), loss=loss, acc=acc, images_per_s=len(split) / seconds)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"nin evaluate: {registry.framework(mod.BACKEND)} on {trainer.device_name}: {len(split):,} test "
              f"images at {image_size}x{image_size}: loss {loss:.4f}, accuracy {acc:.4f} "
              f"({result['images_per_s']:,.0f} img/s)")
