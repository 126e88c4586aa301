"""Every option of the ``nin`` command, defined once: the same name, meaning, check and help in every subcommand.

Values are checked as they are parsed (``positive_int`` and friends), so a bad one ends in one line naming the
option, and exit 2, before anything runs.  Every ``--help`` shows the defaults.
"""
from __future__ import annotations

import argparse
from typing import List, Optional

from nin_common.arch.variants import VARIANTS
from nin_common.arch.weights import INITS
from nin_common.engine import registry
from nin_common.engine.precision import DEVICES, PRECISIONS
from nin_common.util.values import check_bool, check_fraction, check_int, check_non_negative, check_positive


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``nin train: error: argument --epochs: expected ..., got ...``, exit 2."""

    def error(self, message):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default after its help, unless it has none or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            shown = ",".join(action.default) if isinstance(action.default, list) else action.default
            text += f" (default: {shown})"
        return text


def subcommand(sub, name: str, help: str, description: Optional[str] = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=description or help, formatter_class=Formatter)


# ---------------------------------------------------------------- value types (argparse calls them)

def _parsed(convert, check, what: str):
    """An argparse type: ``convert`` the text, ``check`` the value (nin_common.util.values), one-line message."""
    def parse(text: str):
        try:
            return check(convert(text))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _parsed(int, lambda v: check_int("value", v), "a positive integer")
non_negative_int = _parsed(int, lambda v: check_int("value", v, least=0), "a non-negative integer")
positive_float = _parsed(float, lambda v: check_positive("value", v), "a positive finite number")
non_negative_float = _parsed(float, lambda v: check_non_negative("value", v), "a non-negative finite number")
fraction = _parsed(float, lambda v: check_fraction("value", v), "a number in [0, 1)")
BOOLEANS = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}
boolean = _parsed(lambda text: BOOLEANS.get(text.lower()), lambda v: check_bool("value", v), "true or false")


def seed_list(text: str) -> List[int]:
    """``0,1,2``: distinct non-negative integers."""
    try:
        seeds = [check_int("value", int(part), least=0) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list of non-negative integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def backend_list(text: str) -> List[str]:
    try:
        return registry.parse_list(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---------------------------------------------------------------- the options

def backend(p, default: Optional[str] = "all", help: str = "") -> None:
    """``--backend``: one name, a comma list, or ``all``; parsed into a list of names (``--backends`` is an alias)."""
    p.add_argument("--backend", "--backends", dest="backend", type=backend_list,
                   default=None if default is None else registry.parse_list(default),
                   metavar="NAME[,NAME...]|all",
                   help=(help or "backend(s)") + f": {', '.join(registry.BACKENDS)}, a comma list, or all (every "
                                                 "one whose framework is installed)")


def image_size(p, default: Optional[int] = 224, help: str = "images are resized to this") -> None:
    p.add_argument("--image-size", type=positive_int, default=default, metavar="PIXELS", help=help)


def batch_size(p, default: Optional[int] = 128, help: str = "images per batch") -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help=help)


def epochs(p, default: Optional[int] = 10, help: str = "total epochs") -> None:
    p.add_argument("--epochs", type=positive_int, default=default, help=help)


def lr(p, default: Optional[float] = 0.05, help: str = "SGD learning rate") -> None:
    p.add_argument("--lr", type=positive_float, default=default, help=help)


def limits(p, train: Optional[int] = None, val: Optional[int] = None, train_too: bool = True) -> None:
    if train_too:
        p.add_argument("--limit-train", type=positive_int, default=train, metavar="N",
                       help="use the first N training images only")
    p.add_argument("--limit-val", type=positive_int, default=val, metavar="N",
                   help="use the first N test images only")


def device(p, default: Optional[str] = "auto") -> None:
    p.add_argument("--device", choices=DEVICES, default=default,
                   help="auto (the GPU when the framework sees one, else the CPU), cpu or gpu")


def precision(p, default: Optional[str] = "auto", help_default: Optional[str] = None) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default=default,
                   help="fp32, bf16 (bfloat16 compute, float32 master weights) or auto (bf16 where the device "
                        "computes it natively: a recent GPU, a CPU with AVX512-BF16/AMX; else fp32)"
                        + (f"; default: {help_default}" if help_default else ""))


def seed(p, default: Optional[int] = 0, help: str = "seed of the weights, shuffling and dropout") -> None:
    p.add_argument("--seed", type=non_negative_int, default=default, help=help)


def seeds(p, help: str = "comma list of seeds, each trained as its own run") -> None:
    p.add_argument("--seeds", type=seed_list, metavar="SEED[,SEED...]", help=help)


def init(p, default: Optional[str] = "xavier") -> None:
    p.add_argument("--init", choices=INITS, default=default,
                   help="xavier (the chapter's), kaiming (He-normal, zero biases; leaves the loss plateau at "
                        "2.303 sooner), kaiming-alive (kaiming with no class starting dead: the quick recipe's) or "
                        "kaiming-alive-all (kaiming-alive for a last block of any shape: gradual, fc-head)")


def recipe(p, default: Optional[str] = None) -> None:
    """--recipe, --schedule and --warmup: the settings a recipe fills (nin_common.engine.recipes)."""
    from nin_common.engine import recipes
    about = "; ".join(f"{name}: batch {r['batch_size']}, "
                      f"{recipes.describe(r['schedule'], r['lr'], r['warmup'], r['momentum'], r['nesterov'])}, "
                      f"{r['image_size']} px, {r['init']}, {r['epochs']} epochs" for name, r in recipes.RECIPES.items())
    p.add_argument("--recipe", choices=list(recipes.RECIPES), default=default,
                   help=f"the settings not given (default: {default or recipes.DEFAULT_RECIPE}): {about}")
    p.add_argument("--schedule", choices=recipes.SCHEDULES, help="learning rate after the warm-up: constant "
                                                                  "(chapter) or cosine (decays to 0 at the end)")
    p.add_argument("--warmup", type=non_negative_float, help="epochs of linear learning-rate warm-up (chapter: 0)")


def momentum(p) -> None:
    """--momentum and --nesterov: SGD's momentum (a recipe fills them; the chapter's SGD has none)."""
    p.add_argument("--momentum", type=fraction, help="SGD momentum, 0 for plain SGD (chapter: 0)")
    p.add_argument("--nesterov", type=boolean, metavar="true|false",
                   help="Nesterov's form of the momentum (needs --momentum above 0; chapter: false)")


def variant(p, default: Optional[str] = "chapter") -> None:
    p.add_argument("--variant", choices=sorted(VARIANTS), default=default, help="network variant")


def variants(p, default: str = "chapter") -> None:
    p.add_argument("--variants", default=default, help=f"comma list of variants, from: {', '.join(VARIANTS)}")


def shape(p, in_channels: Optional[int] = 1, num_classes: int = 10) -> None:
    p.add_argument("--in-channels", type=positive_int, default=in_channels,
                   help="input channels" + (" (default: the variant's: 1; 3 for cifar10)" if in_channels is None else ""))
    p.add_argument("--num-classes", type=positive_int, default=num_classes, help="output classes")


def data_dir(p) -> None:
    p.add_argument("--data-dir", metavar="DIR",
                   help="folder with the Fashion-MNIST files (default: $NIN_DATA_DIR, else the cache, Debian's "
                        "copy, a download)")


CHECKPOINT_HELP = ("a run folder (or its checkpoint/), a native file (model.pt, model.params, model.weights.h5, "
                   "with its .json description) or canonical .npz weights")


def checkpoint(p) -> None:
    """The checkpoint to read, given as the first argument or as ``--checkpoint`` (``checkpoint_of`` reads it)."""
    p.add_argument("checkpoint", metavar="CHECKPOINT", nargs="?", help=CHECKPOINT_HELP)
    p.add_argument("--checkpoint", dest="checkpoint_option", metavar="CHECKPOINT", help="the same, as an option")


def checkpoint_of(args) -> str:
    given = [c for c in (args.checkpoint, args.checkpoint_option) if c is not None]
    if len(given) != 1:
        raise ValueError(f"expected one checkpoint ({CHECKPOINT_HELP}), got {len(given)}")
    return given[0]


def trained_weights(p) -> None:
    """``--weights NAME``: the trained weights shipped with nin, instead of a checkpoint."""
    from nin_common.arch import pretrained

    p.add_argument("--weights", metavar="NAME", help="the trained weights shipped with nin, instead of a checkpoint: "
                                                    + (", ".join(pretrained.names()) or "none in this install"))


def model_source(args):
    """(checkpoint path, None) or (None, trained weights name): exactly one of ``CHECKPOINT`` and ``--weights``."""
    given = [c for c in (args.checkpoint, args.checkpoint_option) if c is not None]
    if args.weights is not None:
        if given:
            raise ValueError(f"expected a checkpoint or --weights, got both ({given[0]} and --weights {args.weights})")
        return None, args.weights
    return checkpoint_of(args), None


def progress(p) -> None:
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off anyway when the output is not a terminal)")


def json_output(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def show_progress(args) -> bool:
    """Progress bars only for a person at a terminal (or a notebook), unless switched off."""
    from nin_common.util.progress import shown

    return shown(not getattr(args, "no_progress", False))
