"""The shipped trained weights on the 10,000 Fashion-MNIST test images: how many predicted classes agree across
PyTorch, MXNet, TensorFlow, JAX, ONNX Runtime and the float64 reference, and each disagreement's float64 top-2
margin against the bound below which float32 rounding may flip a class (``nin_common.tools.agreement``).

Not a test.  Appends one JSON line to ``benchmarks/results/agreement.jsonl``.

    python benchmarks/agreement.py --weights quick
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from nin_common.arch import pretrained  # noqa: E402
from nin_common.engine import data, registry  # noqa: E402
from nin_common.tools.agreement import agreement  # noqa: E402
from nin_common.tools.parity import REFERENCE  # noqa: E402
from nin_common.util.machine import cpu_flags, describe, git_commit, load_average  # noqa: E402

RESULTS = os.path.join(HERE, "results", "agreement.jsonl")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", default="quick")
    p.add_argument("--backend", default="all")
    p.add_argument("--limit", type=int, default=None, help="the first N test images (default: all 10,000)")
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()
    split = data.load("test", limit=args.limit, progress=False)
    result = agreement(registry.parse_list(args.backend), args.weights, split.images, progress=True)
    ref = result.classes[REFERENCE]
    agree = {name: result.agree_with_reference(name) for name in result.classes if name != REFERENCE}
    all_agree = int(sum(all(v[i] == ref[i] for v in result.classes.values()) for i in range(result.n)))
    accuracy = {name: float((pred == split.labels).mean()) for name, pred in result.classes.items()}
    for name, count in agree.items():
        print(f"{name:>12}: {count:,} of {result.n:,} classes as the float64 reference's; test accuracy "
              f"{accuracy[name]:.4f}; largest logit deviation {result.deviation[name]:.2e} of the largest logit")
    print(f"every row agrees on {all_agree:,} of {result.n:,} images; float64 top-2 margins above "
          f"{result.bound:.2e} must agree; smallest margin {result.margins.min():.2e}")
    for d in result.disagreements():
        print(f"  image {d['index']}: margin {d['margin']:.2e}, classes {d['classes']}")
    row = dict(weights=args.weights, sha256=pretrained.sha256_file(pretrained.path_of(args.weights)), n=result.n,
               agree_with_reference=agree, all_agree=all_agree,
               accuracy=accuracy, reference_accuracy=accuracy[REFERENCE], margin_bound=result.bound,
               smallest_margin=float(result.margins.min()),
               margins_below_bound=int((result.margins <= result.bound).sum()),
               logit_deviation=result.deviation, disagreements=result.disagreements(),
               date=datetime.datetime.now().isoformat(timespec="seconds"), commit=git_commit(ROOT),
               machine=describe(), cpu_flags=sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
               load=load_average())
    with open(args.results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    print(f"row appended to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
