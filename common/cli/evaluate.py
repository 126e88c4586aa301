"""``nin evaluate``: loss and accuracy of a checkpoint on Fashion-MNIST's 10k test images."""
from __future__ import annotations

import json

from common.engine import data, precision, registry, runs, training


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="loss and accuracy of a checkpoint on the Fashion-MNIST test split")
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="a run folder (or its checkpoint/), a native file (model.pt, model.params, "
                        "model.weights.h5) or a canonical model.npz")
    p.add_argument("--backend", choices=registry.BACKENDS,
                   help="framework to evaluate with (default: the one that wrote the checkpoint; another one "
                        "loads the canonical model.npz)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, help="default: the size the model was trained at")
    p.add_argument("--limit", type=int, help="the first N test images only")
    p.add_argument("--device", choices=precision.DEVICES, default="auto")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST files")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    for name in ("batch_size", "image_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"expected --{name.replace('_', '-')} to be a positive integer, got {value}")
    mod, model, image_size = runs.load_checkpoint(args.checkpoint, args.backend)
    image_size = args.image_size or image_size
    trainer = registry.part(mod.BACKEND, "training").Trainer(model, model.lr, args.device)
    split = data.load("test", args.data_dir, args.limit, progress=not args.no_progress)
    loss, acc, seconds = training.evaluate(trainer, split, args.batch_size, image_size, not args.no_progress)
    result = dict(checkpoint=str(args.checkpoint), backend=mod.BACKEND, device=trainer.device_name,
                  image_size=image_size, n=len(split), loss=loss, acc=acc, images_per_s=len(split) / seconds)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"nin evaluate: {registry.framework(mod.BACKEND)} on {trainer.device_name}: {len(split):,} test "
              f"images at {image_size}x{image_size}: loss {loss:.4f}, accuracy {acc:.4f} "
              f"({result['images_per_s']:,.0f} img/s)")
    return 0
