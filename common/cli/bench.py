"""``nin bench``: training and inference speed, input pipeline and memory of one backend on this machine."""
from __future__ import annotations

import json
import sys

from common.engine import precision, registry
from common.tools import bench


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="training/inference images/s, batch-1 latency and peak memory of a backend",
                       description="Time the project's training step, inference and input pipeline on synthetic "
                                   "Fashion-MNIST-shaped batches. The nin command sets OMP_WAIT_POLICY=PASSIVE "
                                   "unless you set it (see the README's Speed section).")
    p.add_argument("--backend", required=True, choices=registry.BACKENDS)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=5, help="timed training steps (and inference batches); default 5")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first (default 2)")
    p.add_argument("--latency-runs", type=int, default=10, help="single images timed for the latency (default 10)")
    p.add_argument("--precision", choices=precision.PRECISIONS, default="auto",
                   help="fp32, bf16 (bfloat16 compute, float32 master weights) or auto (default: bf16 where the "
                        "device computes it natively, else fp32)")
    p.add_argument("--device", choices=precision.DEVICES, default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.set_defaults(run=run)


def run(args) -> int:
    say = None if args.json else (lambda text: print(f"nin bench: {text}", file=sys.stderr, flush=True))
    result = bench.run(args.backend, args.batch_size, args.image_size, args.steps, args.warmup, args.device,
                       args.precision, args.latency_runs, say=say)
    print(json.dumps(result, sort_keys=True) if args.json else bench.report(result))
    return 0
