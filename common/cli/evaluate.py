"""``nin evaluate``: loss and accuracy of a checkpoint, or of the trained weights shipped with nin, on Fashion-MNIST's
10k test images; with ``--out``, accuracy per class, the confusion matrix and test images with their predicted
labels."""
from __future__ import annotations

import json
import os

from nin_common.arch import pretrained
from nin_common.cli import options as O
from nin_common.engine import checkpoint as ck
from nin_common.engine import data, registry, training
from nin_common.tools import views


def add_parser(sub) -> None:
    p = O.subcommand(sub, "evaluate", "loss and accuracy of a checkpoint on the Fashion-MNIST test split")
    O.checkpoint(p)
    O.trained_weights(p)
    O.backend(p, default=None, help="backend(s) to evaluate with (default: the one that wrote the checkpoint, or "
                                    f"{registry.BACKENDS[0]} for --weights; another one loads the canonical weights)")
    O.batch_size(p, default=256)
    O.image_size(p, default=None, help="images are resized to this (default: the size the model was trained at)")
    O.limits(p, train_too=False)
    O.device(p)
    O.precision(p, default=None, help_default="the precision setting the run trained with, so that its validation "
                                              "figures come back; fp32 for --weights")
    O.data_dir(p)
    p.add_argument("--out", metavar="DIR",
                   help="also write DIR/confusion.png, DIR/predictions.png (test images, true and predicted labels), "
                        "DIR/evaluation.md (accuracy per class) and DIR/evaluation.json, and print the per-class "
                        "table (several backends: DIR/<backend>/)")
    O.json_output(p)
    O.progress(p)
    p.set_defaults(run=run)


def run(args) -> int:
    path, weights = O.model_source(args)
    if weights is not None:
        pretrained.check_name(weights)
    names = args.backend or [registry.BACKENDS[0] if weights else None]
    for name in names:
        out = os.path.join(args.out, name) if args.out and len(names) > 1 else args.out
        evaluate_one(args, path, name, out, weights)
    return 0


def evaluate_one(args, path, backend, out=None, weights=None) -> None:
    if weights is None:
        mod, model, image_size = ck.load_checkpoint(path, backend)
    else:
        mod = registry.load(backend)
        model = mod.NiN(weights=weights)
        image_size, path = model.image_size, f"trained weights {weights!r}"
    image_size = args.image_size or image_size
    precision = args.precision or (ck.trained_precision(path) if weights is None else None) or "fp32"
    trainer = training.make_trainer(mod.BACKEND, model, model.lr, args.device, precision)
    progress = O.show_progress(args)
    split = data.load("test", args.data_dir, args.limit_val, progress=progress)
    predictions = [] if out else None
    loss, acc, seconds = training.evaluate(trainer, split, args.batch_size, image_size, progress,
                                           predictions=predictions)
    result = dict(checkpoint=str(path), backend=mod.BACKEND, device=trainer.device_name, precision=trainer.precision,
                  image_size=image_size, n=len(split), loss=loss, acc=acc, images_per_s=len(split) / seconds)
    if weights is not None:
        result.update(weights=weights, stated_acc=pretrained.metadata(weights)["test_accuracy"])
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"nin evaluate: {registry.framework(mod.BACKEND)} on {trainer.device_name}: {len(split):,} test "
              f"images at {image_size}x{image_size}: loss {loss:.4f}, accuracy {acc:.4f} "
              f"({result['images_per_s']:,.0f} img/s)"
              + (f"; stated for these weights: {result['stated_acc']:.4f}" if weights is not None else ""))
    if out:
        title = f"NiN ({registry.framework(mod.BACKEND)}), {len(split):,} test images at {image_size}x{image_size}: " \
                f"accuracy {acc:.4f}"
        paths = views.write(out, split.images, split.labels, predictions, title, result)
        if not args.json:
            print_per_class(views.per_class(views.confusion(split.labels, predictions)))
            print(f"the views are in {out}: {', '.join(os.path.basename(p) for p in paths.values())}")


def print_per_class(results) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="accuracy per class")
    for col in ("class", "images", "correct", "accuracy"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for r in results:
        table.add_row(r.name, str(r.n), str(r.correct), f"{r.acc:.4f}")
    Console().print(table)
