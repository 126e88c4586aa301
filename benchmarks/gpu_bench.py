"""Torch training throughput of the project's NiN on one NVIDIA GPU: bf16 autocast, channels_last, compiled.

Synthetic Fashion-MNIST-shaped batches (uint8 28x28, resized on the GPU to the training size, as the
project's pipeline does), so nothing is downloaded.  Prints images/s and the fraction of the card's dense
bf16 peak, and writes one JSON line to --results if given.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from nin_common.arch.costs import resources  # noqa: E402
from nin_torch import NiN  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s.
PEAKS = {"H100 SXM": 989.4e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989.4e12, "H200": 989.4e12,
         "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def peak_for(name: str):
    for key, value in PEAKS.items():
        if key.replace(" ", "").lower() in name.replace(" ", "").lower():
            return key, value
    return None, None


def macs_per_image(model, size: int) -> int:
    """Forward multiply-adds of one image, from the spec."""
    return resources(model.spec, size).totals["macs"]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--results", default=None)
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cpu: a smoke test of this script's logic where there is no GPU (tiny sizes; no peak)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible to PyTorch", file=sys.stderr)
        return 2
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = NiN(lr=0.05, seed=0, init="kaiming").to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    size = args.image_size

    def step(x_u8, y):
        x = x_u8.unsqueeze(1).float().div_(255.0)
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    fn = step if args.no_compile else torch.compile(step)
    g = torch.Generator(device=dev).manual_seed(0)
    batches = [(torch.randint(0, 256, (args.batch_size, 28, 28), device=dev, dtype=torch.uint8, generator=g),
                torch.randint(0, 10, (args.batch_size,), device=dev, generator=g)) for _ in range(4)]
    t0 = time.perf_counter()
    for i in range(args.warmup):
        loss = fn(*batches[i % 4])
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = fn(*batches[i % 4])
    sync()
    dt = time.perf_counter() - t0
    ips = args.steps * args.batch_size / dt
    flops = 3 * 2 * macs_per_image(model, size)  # forward + backward = 3x forward; 2 FLOP per MAC
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "CPU"
    key, peak = peak_for(name)
    frac = ips * flops / peak if peak else None
    row = {"device": name, "torch": torch.__version__, "batch_size": args.batch_size, "image_size": size,
           "compiled": not args.no_compile, "precision": "bf16 autocast", "channels_last": True,
           "train_images_per_s": round(ips, 1), "tflops": round(ips * flops / 1e12, 1),
           "peak_key": key, "fraction_of_bf16_peak": None if frac is None else round(frac, 4),
           "warmup_s": round(warm_s, 1), "final_loss": float(loss.detach()),
           "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev.type == "cuda" else None}
    print(f"{name}: {ips:,.0f} training images/s at {size}x{size}, batch {args.batch_size} "
          f"({row['tflops']} TFLOP/s" + (f", {100 * frac:.1f}% of {key} dense bf16 peak)" if frac else ")"))
    print(json.dumps(row))
    if args.results:
        with open(args.results, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
