"""The trained weights nin ships: measure what each storage precision keeps, then write the file and its metadata.

Not a test.  From a finished ``nin train`` run, the canonical float32 weights are rounded to each storage
precision (float32, float16, bfloat16), and each rounded copy is evaluated in float32 on the 10,000 Fashion-MNIST
test images (PyTorch; ``nin evaluate``'s pass).  The smallest precision whose accuracy is within 0.01 of float32's
and whose 10,000 predicted classes are all float32's is shipped: ``common/arch/trained/<name>.npz`` (compressed)
and its entry in ``common/arch/trained/index.json`` (recipe, image size, init, the stated test accuracy, the class
names, the preprocessing a raw image needs, the run that trained it, storage, sha256).  One JSON line per precision
is appended to ``benchmarks/results/weights.jsonl``.

    python -m benchmarks.trained_weights --run runs/torch --name quick --commit 03521a2
"""
from __future__ import annotations

import argparse
import datetime
import json
import os

import numpy as np

from nin_common.arch import pretrained
from nin_common.engine import checkpoint, data, training
from nin_common.tools.images import PREPROCESSING
from nin_common.util.machine import cpu_flags, describe, load_average

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RESULTS = os.path.join(HERE, "results", "weights.jsonl")
STORAGE = ("float32", "float16", "bfloat16")
# what a raw image goes through before the network sees it (nin predict does this)
ACC_BOUND = 0.01  # accuracy a storage precision may lose and still be shipped (with every prediction unchanged)


def rounded(weights, storage: str):
    """The float32 weights as ``storage`` would give them back: float16 by NumPy's cast; bfloat16 by rounding the
    float32 bit pattern to its upper 16 bits (round to nearest even)."""
    if storage == "float32":
        return {k: v.copy() for k, v in weights.items()}
    if storage == "float16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()}
    out = {}
    for k, v in weights.items():
        bits = v.astype(np.float32).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
        out[k] = bits.astype(np.uint32).view(np.float32)
    return out


def evaluate(mod, model, weights, split, image_size: int):
    mod.import_weights(model, weights)
    trainer = training.make_trainer(mod.BACKEND, model, model.lr, "cpu", "fp32")
    predictions: list = []
    loss, acc, _ = training.evaluate(trainer, split, 500, image_size, False, predictions=predictions)
    return loss, acc, np.asarray(predictions)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the nin train run folder (its checkpoint is shipped)")
    p.add_argument("--name", required=True, help="the name NiN(weights=...) takes: the recipe that trained them")
    p.add_argument("--commit", required=True, help="the commit the run was trained at")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()

    state = checkpoint.read_state(checkpoint.find_checkpoint(args.run))
    mod, model, image_size = checkpoint.load_checkpoint(args.run, "torch")
    settings = state["settings"]
    trained = mod.export_weights(model)
    split = data.load("test", progress=False)
    rows, base = [], None
    for storage in STORAGE:
        loss, acc, pred = evaluate(mod, model, rounded(trained, storage), split, image_size)
        base = pred if base is None else base
        row = dict(name=args.name, storage=storage, bytes_raw=sum(v.size for v in trained.values()) *
                   (4 if storage == "float32" else 2), test_loss=round(loss, 6), test_acc=acc,
                   changed_predictions=int((pred != base).sum()), n=len(split), evaluated_by="torch fp32",
                   date=datetime.datetime.now().isoformat(timespec="seconds"), machine=describe(),
                   cpu_flags=sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}), load=load_average())
        rows.append(row)
        print(f"{storage:>9}: test accuracy {acc:.4f}, loss {loss:.4f}, {row['changed_predictions']} of "
              f"{len(split):,} predictions changed against float32")
    acc32 = rows[0]["test_acc"]
    fits = [r for r in rows[1:] if r["storage"] == "float16" and r["changed_predictions"] == 0
            and abs(r["test_acc"] - acc32) <= ACC_BOUND]
    chosen = fits[0] if fits else rows[0]
    file = f"{args.name}.npz"
    path = os.path.join(pretrained.TRAINED_DIR, file)
    pretrained.store(path, trained, chosen["storage"])
    for r in rows:
        r["shipped"] = r is chosen
        r["file_bytes"] = os.path.getsize(path) if r is chosen else None
    entries = json.load(open(pretrained.INDEX, encoding="utf-8"))
    entries[args.name] = dict(
        file=file, sha256=pretrained.sha256_file(path), storage=chosen["storage"], recipe=settings["recipe"],
        variant=settings.get("variant") or "chapter", num_classes=len(data.CLASS_NAMES), in_channels=1,
        image_size=image_size, init=settings["init"], test_accuracy=chosen["test_acc"],
        test_loss=chosen["test_loss"], classes=list(data.CLASS_NAMES), preprocessing=PREPROCESSING,
        trained_by=dict(command=f"nin train --backend {state['backend']} --recipe {settings['recipe']} "
                                f"--seed {settings['seed']}", backend=state["backend"],
                        precision=settings["precision"], seed=settings["seed"], epochs=settings["epochs"],
                        commit=args.commit, cpu=describe()["cpu"], val_acc_at_end=state["rows"][-1]["val_acc"]))
    pretrained.write_index(entries)
    with open(args.results, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    print(f"shipped {path} ({chosen['storage']}, {os.path.getsize(path) / 1e6:.2f} MB): stated test accuracy "
          f"{chosen['test_acc']:.4f}; rows appended to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
