"""``nin predict IMAGE...``: the top classes of a learner's own images (PNG, JPEG, GIF, WebP, TIFF or BMP, in any
mode Pillow reads them in: grey, colour, palette, 1-bit, 16-bit, floating point, transparent, CMYK; of an animation,
the first frame; up to 64 megapixels; colour or grey, light or dark background), preprocessed as the trained
weights' metadata says (``nin_common.tools.images``).  A file that cannot be read so is one line, exit 2."""
from __future__ import annotations

import json

import numpy as np

from nin_common.arch import pretrained
from nin_common.cli import options as O
from nin_common.engine import checkpoint as ck
from nin_common.engine import registry, training
from nin_common.tools.images import ACCEPTED, MAX_PIXELS, read_garment


def add_parser(sub) -> None:
    p = O.subcommand(sub, "predict", f"the top classes of your own images of garments ({ACCEPTED})")
    p.add_argument("images", metavar="IMAGE", nargs="+",
                   help=f"{ACCEPTED} files (of an animation, the first frame; at most {MAX_PIXELS:,} pixels)")
    p.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT",
                   help="a run or checkpoint instead of the trained weights")
    p.add_argument("--weights", default="quick", metavar="NAME",
                   help="the trained weights shipped with nin (default: quick)")
    O.backend(p, default=registry.BACKENDS[0], help="backend(s) to predict with")
    p.add_argument("--top", type=int, default=3, help="classes to show per image, 1 to 10 (default: 3)")
    O.device(p)
    O.json_output(p)
    p.set_defaults(run=run, checkpoint=None)


def probabilities(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def run(args) -> int:
    if not 1 <= args.top <= 10:
        raise ValueError(f"expected --top to be 1 to 10, got {args.top}")
    images = np.stack([read_garment(path) for path in args.images])  # every file checked before any model
    if args.checkpoint_option is None:
        pretrained.check_name(args.weights)
    from nin_common.engine.data import CLASS_NAMES

    for name in args.backend:
        if args.checkpoint_option is None:
            mod = registry.load(name)
            model = mod.NiN(weights=args.weights)
        else:
            mod, model, _ = ck.load_checkpoint(args.checkpoint_option, name)
        trainer = training.make_trainer(mod.BACKEND, model, model.lr, args.device, "fp32")
        probs = probabilities(np.asarray(trainer.predict_step(images, model.image_size)))
        for path, p in zip(args.images, probs):
            top = np.argsort(-p, kind="stable")[:args.top]
            if args.json:
                print(json.dumps(dict(image=path, backend=mod.BACKEND,
                                      top=[dict(cls=CLASS_NAMES[i], p=float(p[i])) for i in top])))
            else:
                print(f"{path} ({registry.framework(mod.BACKEND)}): "
                      + ", ".join(f"{CLASS_NAMES[i]} {p[i]:.3f}" for i in top))
    return 0
