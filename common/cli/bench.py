"""``nin bench``: training and inference speed, input pipeline and memory of one backend on this machine."""
from __future__ import annotations

import json
import sys

from nin_common.cli import options as O
from nin_common.engine import registry
from nin_common.tools import bench


def add_parser(sub) -> None:
    p = O.subcommand(sub, "bench", "training/inference images/s, batch-1 latency and peak memory of a backend",
                     description="Time the project's training step, inference and input pipeline on synthetic "
                                 "Fashion-MNIST-shaped batches. The nin command sets OMP_WAIT_POLICY=PASSIVE "
                                 "unless you set it (see docs/speed.md).")
    O.backend(p, default=None, help="backend(s) to time, one after the other")
    O.batch_size(p)
    O.image_size(p)
    p.add_argument("--steps", type=O.positive_int, default=5, help="timed training steps (and inference batches)")
    p.add_argument("--warmup", type=O.non_negative_int, default=2, help="untimed training steps first")
    p.add_argument("--latency-runs", type=O.positive_int, default=10, help="single images timed for the latency")
    O.precision(p)
    O.device(p)
    O.json_output(p)
    p.set_defaults(run=run)


def run(args) -> int:
    say = None if args.json else (lambda text: print(f"nin bench: {text}", file=sys.stderr, flush=True))
    if args.backend is None:
        raise ValueError(f"expected --backend {'|'.join(registry.BACKENDS)}, a comma list or all, got none")
    for name in args.backend:
        result = bench.run(name, args.batch_size, args.image_size, args.steps, args.warmup, args.device,
                           args.precision, args.latency_runs, say=say)
        print(json.dumps(result, sort_keys=True) if args.json else bench.report(result))
    return 0
