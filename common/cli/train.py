"""``nin train``: the chapter's recipe on Fashion-MNIST in one backend, with progress, metrics, checkpoints."""
from __future__ import annotations

import os
import sys

from nin_common.cli import options as O
from nin_common.engine import checkpoint as ck
from nin_common.engine import config, recipes, registry, training
from nin_common.engine.distributed import WorkerLost

# the RunConfig fields the command offers as options of the same names (--out and --resume are its own: --out
# is per backend); left out, they come from the run being resumed, else from the recipe
OPTIONS = tuple(name for name in config.FIELDS if name not in ("out", "resume"))
DEFAULTS = config.DEFAULTS
CHAPTER = recipes.RECIPES[recipes.DEFAULT_RECIPE]


def add_parser(sub) -> None:
    p = O.subcommand(sub, "train", "train NiN on Fashion-MNIST (default: the chapter's recipe)",
                     description="Train NiN on Fashion-MNIST. Defaults are the chapter's recipe: SGD lr 0.05, "
                                 "batch 128, 10 epochs, 224x224, Xavier init; --recipe quick-nesterov learns on a CPU in "
                                 "minutes. Options given win over the recipe's values. With --resume, the options "
                                 "left out are taken from the run being resumed.")
    O.backend(p, default=None, help="backend(s) to train, one after the other (with --resume: the run's)")
    O.recipe(p)
    O.momentum(p)
    c = CHAPTER
    O.epochs(p, default=None, help=f"total epochs (chapter: {c['epochs']})")
    O.batch_size(p, default=None, help=f"images per batch (chapter: {c['batch_size']})")
    O.lr(p, default=None, help=f"SGD learning rate, the peak of the schedule (chapter: {c['lr']})")
    O.image_size(p, default=None, help=f"images are resized to this (chapter: {c['image_size']})")
    O.limits(p)
    O.device(p, default=None)
    O.precision(p, default=None)
    O.seed(p, default=None, help=f"seed of the weights, shuffling and dropout (default: {DEFAULTS['seed']})")
    O.init(p, default=None)
    O.variant(p, default=None)
    O.data_dir(p)
    p.add_argument("--out", metavar="DIR", help="folder for metrics.jsonl, curves.png and checkpoint/ (with several "
                                                "backends: DIR/<backend>; with --resume: the resumed run's folder; "
                                                "else nothing is saved)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last completed epoch")
    p.add_argument("--workers", type=O.positive_int, metavar="N",
                   help="data-parallel worker processes on this machine, through the framework's own engine and "
                        "launcher (the batch is the global one, split evenly; default: one per GPU, else 1)")
    p.add_argument("--port", type=O.positive_int, metavar="PORT",
                   help="where the workers meet on 127.0.0.1 (default: a free port)")
    O.progress(p)
    p.set_defaults(run=run)


def run(args) -> int:
    stored = ck.resume_settings(args.resume) if args.resume else {}
    names = args.backend or ([stored["backend"]] if stored else None)
    if names is None:
        raise ValueError(f"expected --backend {'|'.join(registry.BACKENDS)}, a comma list or all (or --resume DIR), "
                         f"got none")
    if args.resume and len(names) > 1:
        raise ValueError(f"expected one backend with --resume (the run's, {stored['backend']}), got {','.join(names)}")
    given = {name: getattr(args, name) for name in OPTIONS}
    options = {name: stored.get(name, DEFAULTS[name]) if value is None else value for name, value in given.items()}
    for name in names:
        registry.available(name)  # names the extra to install when the framework is missing
    if args.out is None and args.resume is None:
        print("nin train: no --out given: metrics and checkpoints are not saved", file=sys.stderr)
    for name in names:
        out = os.path.join(args.out, name) if args.out is not None and len(names) > 1 else args.out
        code = train_one(name, out, args, options)
        if code:
            return code
    return 0


def train_one(backend: str, out, args, options) -> int:
    try:  # the backend's Trainer; the framework is imported only where training happens (not in a launcher)
        run_config = config.RunConfig(**options, out=out, resume=args.resume)
        training.train(backend, run_config, progress=O.show_progress(args))
    except (training.NonFiniteLoss, WorkerLost) as err:
        print(f"nin train: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"nin train: interrupted; {resume_hint(out or args.resume)}", file=sys.stderr)
        return 130
    where = out or args.resume
    world = registry.launching(backend).environment_world()
    if world is not None and (os.environ.get("NIN_LAUNCHED") or not world.chief):
        return 0  # a worker: the launcher (or the chief) says where the run is
    if where:
        print(f"nin train: the run is in {where} (metrics.jsonl, curves.png, checkpoint/); look at it with: "
              f"nin evaluate --checkpoint {where} --out {os.path.join(where, 'evaluation')}")
    return 0


def resume_hint(where) -> str:
    """What to do after an interruption: resume from the last completed epoch, or say there is none."""
    if where is None:
        return "nothing was saved (no --out)"
    try:
        epoch = ck.read_state(ck.find_checkpoint(where))["epoch"]
    except FileNotFoundError:
        return (f"no epoch had completed, so {where} holds no checkpoint to resume: run the same command again "
                f"to start over")
    return f"epoch {epoch} is saved; continue with: nin train --resume {where}"
