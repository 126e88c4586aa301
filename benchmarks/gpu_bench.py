"""The measurements ``benchmarks/gpu.sh`` makes on one GPU, one subcommand each, through nin's public API.

Not a test.  Every subcommand appends JSON lines (``row``) to ``$GPU_BENCH_RESULTS`` (default:
``benchmarks/results/gpu.jsonl``) and to ``$GPU_BENCH_RUN_ROWS`` (this run's rows only, when set), each with the
GPU's name, the framework and its version, the date, the commit and the run's id.  ``gpu.sh`` sets those
variables; run alone, a subcommand writes to the default file.

* ``machine``: versions of python, numpy, torch, jax, flax, optax, the GPU as torch and jax see it; writes
  ``--out`` (JSON) that later subcommands read (``$GPU_BENCH_MACHINE``) for the GPU's name and the versions.
* ``predict``: the shipped trained weights on the test images, every image's logits kept (``--out`` .npz), in
  the framework's default float32 mode (on a GPU: TF32 where the framework allows it) and/or with
  ``runtime.full_float32()`` (float32 computed as float32).
* ``agree``: how many images' predicted classes differ between two ``predict`` files.
* ``speed``: training images/s over timed steps (after untimed warm-up ones) at fixed batch sizes, and the
  largest batch of ``--search`` (tried from the largest down) that trains without running out of memory.
* ``epoch-row``: the last row of a ``nin train`` run's metrics.jsonl, as a result row.
* ``import-rows``: JSON objects printed by ``nin evaluate --json``, as result rows.
* ``profile``: torch.profiler over a few training steps: the operators and kernels that take the device's time,
  and how busy the device is.
* ``summary``: this run's rows as a table, and the project's target (40,000 training images/s at 224 px in bf16
  on one H100) met or not.
* ``step-row``: one row for a step of ``gpu.sh`` (exit status, seconds, limit).

    python -m benchmarks.gpu_bench speed --backend torch --precision bf16 --batch-sizes 128 --search 4096,2048
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "gpu.jsonl")
TARGET_IMAGES_PER_S = 40_000  # the project's target: training images/s at 224 px in bf16 on one H100
# Dense (no sparsity) tensor-core peaks, FLOP/s, by a part of the GPU's name: bf16 and TF32.
PEAKS = {"H100 NVL": (835e12, 418e12), "H100 PCIe": (756e12, 378e12), "H100": (989.4e12, 494.7e12),
         "H200": (989.4e12, 494.7e12), "A100": (312e12, 156e12), "L40S": (362e12, 183e12), "L4": (121e12, 60e12)}
MODULES = ("numpy", "torch", "jax", "jaxlib", "flax", "optax")


# ---------------------------------------------------------------- rows

def machine_info() -> dict:
    """What ``machine`` wrote (``$GPU_BENCH_MACHINE``), or {} where there is nothing to read."""
    path = os.environ.get("GPU_BENCH_MACHINE")
    try:
        with open(path) as f:
            return json.load(f)
    except (TypeError, OSError, ValueError):
        return {}


def row(kind: str, **fields) -> dict:
    """A result row: what every row has, then ``fields``; appended to the results file(s) and printed."""
    info = machine_info()
    backend = fields.get("backend")
    out = dict(kind=kind, gpu=info.get("gpu"), date=datetime.datetime.now(datetime.timezone.utc)
               .isoformat(timespec="seconds"), commit=os.environ.get("GIT_COMMIT") or None,
               run_id=os.environ.get("GPU_BENCH_RUN_ID") or None, smoke=os.environ.get("GPU_SMOKE") == "1")
    if backend:
        from nin_common.engine import registry

        module = registry.info(backend).module
        out.update(framework=registry.framework(backend),
                   framework_version=(info.get("versions") or {}).get(module) or version_of(module))
    out.update(fields)
    text = json.dumps(out, default=str)
    for path in {os.environ.get("GPU_BENCH_RESULTS") or RESULTS, os.environ.get("GPU_BENCH_RUN_ROWS")} - {None, ""}:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(text + "\n")
    print("ROW " + text, flush=True)
    return out


def version_of(module: str):
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a version is information, not a requirement
        return None


def peaks_for(gpu):
    """(bf16 peak, TF32 peak) FLOP/s of the GPU named ``gpu``, or (None, None)."""
    for key, value in PEAKS.items():
        if gpu and key.replace(" ", "").lower() in gpu.replace(" ", "").lower():
            return value
    return None, None


def flops_per_image(image_size: int) -> float:
    """Training FLOP of one image: forward multiply-adds (from the spec) x 2 FLOP x 3 (forward + backward)."""
    from nin_common.arch.costs import resources
    from nin_common.arch.variants import build_spec

    return 6.0 * resources(build_spec("chapter"), image_size).totals["macs"]


def throughput_fields(images_per_s, image_size: int, precision: str) -> dict:
    if not images_per_s:
        return {}
    tflops = images_per_s * flops_per_image(image_size) / 1e12
    bf16_peak, tf32_peak = peaks_for(machine_info().get("gpu"))
    peak = bf16_peak if precision == "bf16" else tf32_peak
    return dict(tflops=round(tflops, 1),
                fraction_of_peak=round(tflops * 1e12 / peak, 4) if peak else None,
                peak_used="dense bf16" if precision == "bf16" else "dense TF32")


# ---------------------------------------------------------------- machine

def cmd_machine(args) -> int:
    import platform

    versions = {"python": platform.python_version()}
    for module in MODULES:
        versions[module] = version_of(module)
    info = dict(versions=versions, gpu=None, nproc=os.cpu_count(), host=platform.node())
    try:
        import torch

        versions["torch"] = torch.__version__
        info.update(torch_cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    torch_cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                        gpu_capability=f"{props.major}.{props.minor}", gpu_count=torch.cuda.device_count(),
                        bf16_supported=torch.cuda.is_bf16_supported())
    except Exception as err:  # noqa: BLE001 - reported, the run goes on
        info["torch_error"] = repr(err)
    try:
        import jax

        versions["jax"] = jax.__version__
        info["jax_devices"] = [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in jax.devices()]
    except Exception as err:  # noqa: BLE001
        info["jax_error"] = repr(err)
    if info["gpu"] is None and args.cpu_label:
        info["gpu"] = args.cpu_label
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    for key, value in info.items():
        print(f"{key}: {value}")
    os.environ["GPU_BENCH_MACHINE"] = args.out
    row("machine", **info)
    return 0


# ---------------------------------------------------------------- predictions and agreement

def full_float32(backend: str) -> None:
    from nin_common.engine import registry

    registry.part(backend, "runtime").full_float32()


def cmd_predict(args) -> int:
    import numpy as np

    from nin_common.arch import pretrained
    from nin_common.engine import data, registry, training

    mod = registry.load(args.backend)
    model = mod.NiN(weights=args.weights)
    size = model.image_size
    trainer = training.make_trainer(mod.BACKEND, model, model.lr, args.device, "fp32")
    split = data.load("test", limit=args.limit, progress=False)
    stated = pretrained.metadata(args.weights)["test_accuracy"]
    saved = dict(labels=split.labels)
    on_gpu = args.device == "gpu"
    for mode in args.modes.split(","):
        if mode == "float32":
            full_float32(args.backend)
        elif mode != "default":
            raise ValueError(f"expected modes among default, float32, got {mode!r}")
        for images, _ in data.batches(split, args.batch_size):  # warm-up: allocation, compilation
            trainer.predict_step(images, size)
            break
        start, parts = time.perf_counter(), []
        for images, _ in data.batches(split, args.batch_size):
            parts.append(trainer.predict_step(images, size))
        seconds = time.perf_counter() - start
        logits = np.concatenate(parts)
        predicted = logits.argmax(axis=1)
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        loss = float(np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(predicted)),
                                                                            split.labels]))
        saved[f"logits_{mode}"] = logits
        acc = float((predicted == split.labels).mean())
        tf32 = ("off (runtime.full_float32)" if mode == "float32" else "framework default") if on_gpu else "n/a (CPU)"
        row("evaluate", backend=args.backend, device=trainer.device_name, weights=args.weights, mode=mode,
            precision="fp32", tf32=tf32, image_size=size, batch_size=args.batch_size, n=len(split), accuracy=acc,
            loss=loss, stated_accuracy=stated, accuracy_minus_stated=round(acc - stated, 6),
            images_per_s=round(len(split) / seconds, 1))
    np.savez(args.out, backend=args.backend, device=trainer.device_name, **saved)
    return 0


def label(path: str, saved) -> str:
    """'gpu-torch (cuda:0 (NVIDIA H100 80GB HBM3))': the file's name and the device that made it."""
    return f"{os.path.splitext(os.path.basename(path))[0]} ({saved['device']})"


def cmd_agree(args) -> int:
    import numpy as np

    ref, cand = np.load(args.reference), np.load(args.candidate)
    if not np.array_equal(ref["labels"], cand["labels"]):
        raise ValueError(f"{args.reference} and {args.candidate} hold other images")
    ref_logits = ref[f"logits_{args.reference_mode}"]
    ref_pred = ref_logits.argmax(axis=1)
    scale = float(np.abs(ref_logits).max())
    for key in sorted(k for k in cand.files if k.startswith("logits_")):
        logits = cand[key]
        pred = logits.argmax(axis=1)
        differ = np.flatnonzero(pred != ref_pred)
        row("agreement", backend=str(cand["backend"]), candidate=f"{label(args.candidate, cand)} {key[7:]}",
            reference=f"{label(args.reference, ref)} {args.reference_mode}", n=len(pred),
            differing=int(len(differ)), differing_indices=differ[:20].tolist(),
            max_logit_deviation=float(np.abs(logits.astype(np.float64) - ref_logits).max() / scale),
            accuracy=float((pred == ref["labels"]).mean()),
            reference_accuracy=float((ref_pred == ref["labels"]).mean()))
    return 0


# ---------------------------------------------------------------- training speed

def is_out_of_memory(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return "out of memory" in text or "resource_exhausted" in text or "outofmemory" in text


def free_device_memory(backend: str) -> None:
    gc.collect()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    elif backend == "jax":
        import jax

        jax.clear_caches()
    gc.collect()


def timed_steps(args, batch_size: int) -> dict:
    """Images/s of training steps at ``batch_size``: ``--warmup`` untimed steps, then steps in chunks of 5 until
    ``--seconds`` have passed (at least ``--min-steps``, at most ``--max-steps``)."""
    from nin_common.tools import bench

    trainer = bench.make_trainer(args.backend, args.image_size, args.device, args.precision)
    step = lambda images, labels: trainer.train_step(images, labels, args.image_size)  # noqa: E731
    start = time.perf_counter()
    bench.seconds_each(step, bench.full_batches(batch_size, args.warmup, seed=1))
    warmup_s = time.perf_counter() - start
    times, chunk = [], 0
    while len(times) < args.min_steps or (sum(times) < args.seconds and len(times) < args.max_steps):
        chunk += 1
        times += bench.seconds_each(step, bench.full_batches(batch_size, 5, seed=1 + chunk))
    ips = bench.rate(batch_size, times)
    return dict(device=trainer.device_name, precision=trainer.precision, images_per_s=round(ips, 1),
                steps=len(times), seconds=round(sum(times), 3), warmup_steps=args.warmup,
                warmup_s=round(warmup_s, 2), median_step_ms=round(1000 * sorted(times)[len(times) // 2], 3),
                peak_device_mb=trainer.peak_memory_mb())


def measure(args, batch_size: int, role: str, **extra):
    """Time ``batch_size`` and write a row; None (and a row saying why) when it does not fit or fails."""
    failure = None
    try:
        result = timed_steps(args, batch_size)
    except Exception as err:  # noqa: BLE001 - out of memory is an answer here, other errors are reported
        text = str(err).splitlines()[0] if str(err) else ""
        failure = (is_out_of_memory(err), f"{type(err).__name__}: {text}"[:300])
    # here, out of the except block, the failed step's frames and their device arrays are released
    free_device_memory(args.backend)
    if failure is not None:
        oom, message = failure
        print(f"batch {batch_size}: {'out of memory' if oom else 'failed'}: {message}", flush=True)
        row("train_steps", backend=args.backend, role=role, requested_precision=args.precision,
            batch_size=batch_size, image_size=args.image_size, fits=False, out_of_memory=oom, error=message, **extra)
        return None
    print(f"batch {batch_size}: {result['images_per_s']:,.0f} training images/s "
          f"({result['steps']} timed steps, median {result['median_step_ms']} ms)", flush=True)
    row("train_steps", backend=args.backend, role=role, batch_size=batch_size, image_size=args.image_size,
        fits=True, tf32="n/a (bf16)" if result["precision"] == "bf16" else "framework default", **result,
        **throughput_fields(result["images_per_s"], args.image_size, result["precision"]), **extra)
    return result


def cmd_speed(args) -> int:
    fixed = [int(b) for b in args.batch_sizes.split(",") if b]
    search = sorted((int(b) for b in args.search.split(",") if b), reverse=True)
    extra = dict(note="synthetic batches through Trainer.train_step (what nin train runs per step), after "
                      "untimed warm-up steps; one host-device synchronisation per step")
    for bs in fixed:
        measure(args, bs, "fixed", **extra)
    largest, tried = None, []
    for bs in search:
        result = measure(args, bs, "search", **extra)
        tried.append(dict(batch_size=bs, fits=result is not None))
        if result is not None:
            largest = bs
            break
    if search:
        row("max_batch", backend=args.backend, requested_precision=args.precision, image_size=args.image_size,
            largest_batch=largest, tried=tried, cap=search[0],
            note=f"the largest of {','.join(map(str, search))} (tried from the largest down) that trains")
        if args.max_file:
            with open(args.max_file, "w") as f:
                f.write(f"{largest or ''}\n")
    if args.cudnn_benchmark_too and args.backend == "torch":
        import torch

        torch.backends.cudnn.benchmark = True  # cuDNN times its algorithms per shape once, then keeps the fastest
        for bs in fixed + ([largest] if largest else []):
            measure(args, bs, "cudnn_benchmark", cudnn_benchmark=True,
                    note="as the other rows, with torch.backends.cudnn.benchmark = True (nin train does not set it)")
    return 0


# ---------------------------------------------------------------- rows from other commands

def cmd_epoch_row(args) -> int:
    with open(os.path.join(args.run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    last = rows[-1]
    keep = ("epoch", "epochs", "device", "precision", "batch_size", "image_size", "images_per_s", "train_s",
            "train_loss", "train_acc", "val_loss", "val_acc", "n_train", "n_val", "peak_device_mb", "recipe",
            "elapsed_s", "load_avg")
    fields = {k: last.get(k) for k in keep}
    fields["images_per_s"] = round(fields["images_per_s"], 1)
    row("train_epoch", backend=last["backend"], requested_precision=args.precision, command=args.nin_command,
        tf32="framework default" if last["precision"] == "fp32" else "n/a (bf16)",
        note="nin train's own figure: the epoch's training images over its training seconds, the first steps' "
             "warm-up (and, in JAX, compilation of the full and the last partial batch) included",
        **fields, **throughput_fields(fields["images_per_s"], last["image_size"], last["precision"]))
    return 0


def cmd_import_rows(args) -> int:
    with open(args.file) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                data = json.loads(line)
                row(args.kind, **data, tf32="framework default" if "cuda" in str(data.get("device", "")).lower()
                    or "gpu" in str(data.get("device", "")).lower() else "n/a (CPU)")
    return 0


def cmd_step_row(args) -> int:
    row("step", step=args.name, status=args.status, exit_code=args.rc, seconds=args.seconds, limit_s=args.limit)
    return 0


# ---------------------------------------------------------------- profile

def busy_microseconds(intervals) -> float:
    """The length of the union of (start, end) intervals."""
    total, end = 0.0, -math.inf
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def cmd_profile(args) -> int:
    from torch.profiler import ProfilerActivity, profile

    from nin_common.tools import bench

    trainer = bench.make_trainer("torch", args.image_size, args.device, args.precision)
    cuda = trainer.device.type == "cuda"
    size = args.image_size
    step = lambda images, labels: trainer.train_step(images, labels, size)  # noqa: E731
    bench.seconds_each(step, bench.full_batches(args.batch_size, args.warmup, seed=1))
    wall = bench.seconds_each(step, bench.full_batches(args.batch_size, args.timed, seed=2))
    wall_ms = 1000 * sum(wall) / len(wall)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    batches = list(bench.full_batches(args.batch_size, args.steps, seed=3))
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for images, labels in batches:
            step(images, labels)
        profiled_ms = 1000 * (time.perf_counter() - start) / args.steps
    averages = prof.key_averages()
    device_key = "self_device_time_total" if hasattr(averages[0], "self_device_time_total") else \
        "self_cuda_time_total"
    device_seen = cuda and any(getattr(e, device_key) > 0 for e in averages)
    if cuda and not device_seen:
        print("the profiler recorded no GPU time (CUPTI unavailable?): the table is by CPU time")
    sort_key = device_key if device_seen else "self_cpu_time_total"
    title = (f"torch.profiler: {args.steps} training steps, {trainer.precision}, batch {args.batch_size}, "
             f"{size}x{size}, {trainer.device_name}; sorted by {sort_key}")
    print(title)
    print(averages.table(sort_by=sort_key, row_limit=args.top))
    top = sorted(averages, key=lambda e: getattr(e, sort_key), reverse=True)[:args.top]
    total = sum(getattr(e, sort_key) for e in averages) or 1.0
    top_rows = [dict(name=e.key[:120], calls=e.count, us_per_step=round(getattr(e, sort_key) / args.steps, 1),
                     share=round(getattr(e, sort_key) / total, 4)) for e in top]
    busy_ms = None
    if device_seen:
        try:  # the union of the kernels' and copies' intervals on the device
            spans = [(e.time_range.start, e.time_range.end) for e in prof.events()
                     if str(getattr(e, "device_type", "")).endswith("CUDA")]
            busy_ms = busy_microseconds(spans) / 1000 / args.steps if spans else None
        except Exception as err:  # noqa: BLE001 - the table above is the main output
            print(f"(device busy time not computed: {err!r})")
    inclusive = "device_time_total" if device_seen and hasattr(averages[0], "device_time_total") else \
        "cuda_time_total" if device_seen else "cpu_time_total"
    per_op = sorted(((e.key, getattr(e, inclusive))
                     for e in averages if e.key.startswith("aten::")), key=lambda kv: kv[1], reverse=True)[:args.top]
    print(f"aten operators by {inclusive} (inclusive) per step:")
    for name, us in per_op:
        print(f"  {name:45s} {us / args.steps / 1000:9.3f} ms")
    # the input pipeline's share: the resize (an upsample operator and its kernel) and the host-device copies
    pipeline = [dict(name=e.key[:120], device_ms_per_step=round(getattr(e, inclusive if device_seen else device_key)
                                                                 / args.steps / 1000, 4),
                     cpu_ms_per_step=round(e.cpu_time_total / args.steps / 1000, 4))
                for e in averages if "upsample" in e.key.lower() or "memcpy" in e.key.lower()]
    print("input pipeline (resize, copies): " + "; ".join(f"{p['name'][:60]}: device {p['device_ms_per_step']} ms, "
                                                           f"CPU {p['cpu_ms_per_step']} ms per step" for p in pipeline))
    print(f"wall time per step {wall_ms:.3f} ms unprofiled, {profiled_ms:.3f} ms profiled"
          + (f"; device busy {busy_ms:.3f} ms per step ({100 * busy_ms / wall_ms:.0f}% of the unprofiled wall time)"
             if busy_ms else ""), flush=True)
    row("profile", backend="torch", device=trainer.device_name, precision=trainer.precision,
        batch_size=args.batch_size, image_size=size, steps=args.steps, sorted_by=sort_key,
        wall_ms_per_step=round(wall_ms, 3), profiled_ms_per_step=round(profiled_ms, 3),
        device_busy_ms_per_step=None if busy_ms is None else round(busy_ms, 3),
        device_busy_fraction=None if busy_ms is None else round(busy_ms / wall_ms, 4),
        images_per_s=round(1000 * args.batch_size / wall_ms, 1), top=top_rows,
        top_aten=[dict(name=n, ms_per_step=round(us / args.steps / 1000, 4)) for n, us in per_op],
        input_pipeline=pipeline)
    return 0


# ---------------------------------------------------------------- summary

def cmd_summary(args) -> int:
    rows = []
    with open(args.rows) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    gpu = machine_info().get("gpu") or next((r["gpu"] for r in rows if r.get("gpu")), None)
    print(f"\n==== summary of run {rows[0].get('run_id') if rows else '?'} on {gpu} "
          f"(commit {os.environ.get('GIT_COMMIT') or '?'}) ====")
    for r in rows:
        if r["kind"] == "step":
            code, took = ("-" if r["exit_code"] is None else r["exit_code"]), \
                ("-" if r["seconds"] is None else f"{r['seconds']}s")
            print(f"step {r['step']:28s} {r['status']:8s} exit {code:>4}  {took:>5} "
                  f"(limit {r['limit_s']}s)")
    for r in rows:
        if r["kind"] in ("evaluate", "cli_evaluate"):
            print(f"{r['kind']:12s} {r['framework']:8s} {r.get('device', '')[:40]:40s} {r.get('mode', 'cli'):8s} "
                  f"tf32 {r.get('tf32')}: accuracy {r.get('accuracy', r.get('acc')):.4f} "
                  f"(stated {r.get('stated_accuracy', r.get('stated_acc'))}) on {r['n']} images")
        elif r["kind"] == "agreement":
            print(f"agreement    {r['framework']:8s} {r['candidate'][:48]:48s} vs {r['reference'][:40]}: "
                  f"{r['differing']} of {r['n']} differ (max logit deviation {r['max_logit_deviation']:.2e})")
    best = {}
    for r in rows:
        if r["kind"] in ("train_steps", "train_epoch") and r.get("images_per_s"):
            print(f"{r['kind']:12s} {r['framework']:8s} {r['precision']:5s} batch {r['batch_size']:>5} "
                  f"{r['image_size']}px: {r['images_per_s']:>10,.0f} images/s"
                  + (f", {r['tflops']} TFLOP/s" if r.get("tflops") else "")
                  + (" (cudnn.benchmark)" if r.get("cudnn_benchmark") else "")
                  + (" (timed steps)" if r["kind"] == "train_steps" and not r.get("cudnn_benchmark") else "")
                  + (f", val acc {r['val_acc']:.4f}" if r.get("val_acc") is not None else "")
                  + (f", peak {r['peak_device_mb']:,.0f} MiB" if r.get("peak_device_mb") else ""))
            if r["precision"] == "bf16" and r["image_size"] == 224:
                key = (r["framework"], r["kind"])
                best[key] = max(best.get(key, 0), r["images_per_s"])
        elif r["kind"] == "max_batch":
            print(f"max_batch    {r['framework']:8s} {r['requested_precision']:5s} largest batch that trains: "
                  f"{r['largest_batch']} (tried {[t['batch_size'] for t in r['tried']]}, cap {r['cap']})")
        elif r["kind"] == "profile":
            print(f"profile      torch {r['precision']} batch {r['batch_size']}: {r['wall_ms_per_step']} ms per step"
                  + (f", device busy {100 * r['device_busy_fraction']:.0f}%" if r.get("device_busy_fraction")
                     else "") + "; top: " + ", ".join(t["name"][:40] for t in r["top"][:3]))
    for (framework, kind), ips in sorted(best.items()):
        met = ips >= TARGET_IMAGES_PER_S
        print(f"target {TARGET_IMAGES_PER_S:,} bf16 training images/s at 224 px: {framework} {kind}: best "
              f"{ips:,.0f}: {'met' if met else 'NOT met'}")
    if not best:
        print(f"target {TARGET_IMAGES_PER_S:,} bf16 training images/s at 224 px: no bf16 224 px figure in this run")
    return 0


# ---------------------------------------------------------------- command line

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("machine")
    s.add_argument("--out", required=True)
    s.add_argument("--cpu-label", default=None, help="the 'gpu' field where torch sees no GPU")
    s.set_defaults(run=cmd_machine)

    s = sub.add_parser("predict")
    s.add_argument("--backend", required=True)
    s.add_argument("--device", default="gpu")
    s.add_argument("--weights", default="chapter")
    s.add_argument("--modes", default="default,float32", help="comma list, in this order: default, float32")
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--batch-size", type=int, default=500)
    s.add_argument("--out", required=True)
    s.set_defaults(run=cmd_predict)

    s = sub.add_parser("agree")
    s.add_argument("--reference", required=True)
    s.add_argument("--reference-mode", default="float32")
    s.add_argument("--candidate", required=True)
    s.set_defaults(run=cmd_agree)

    s = sub.add_parser("speed")
    s.add_argument("--backend", required=True)
    s.add_argument("--precision", required=True)
    s.add_argument("--device", default="gpu")
    s.add_argument("--image-size", type=int, default=224)
    s.add_argument("--batch-sizes", default="128", help="comma list of batch sizes timed")
    s.add_argument("--search", default="", help="comma list of batch sizes; the largest that trains is searched")
    s.add_argument("--max-file", default=None, help="write the largest batch that trains here")
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--seconds", type=float, default=2.0)
    s.add_argument("--min-steps", type=int, default=5)
    s.add_argument("--max-steps", type=int, default=400)
    s.add_argument("--cudnn-benchmark-too", action="store_true")
    s.set_defaults(run=cmd_speed)

    s = sub.add_parser("epoch-row")
    s.add_argument("--run", dest="run_dir", required=True, help="the folder nin train wrote")
    s.add_argument("--precision", default=None)
    s.add_argument("--command", dest="nin_command", default=None, help="the nin train command line, for the row")
    s.set_defaults(run=cmd_epoch_row)

    s = sub.add_parser("import-rows")
    s.add_argument("--file", required=True)
    s.add_argument("--kind", default="cli_evaluate")
    s.set_defaults(run=cmd_import_rows)

    s = sub.add_parser("step-row")
    s.add_argument("--name", required=True)
    s.add_argument("--status", required=True)
    s.add_argument("--rc", type=int, default=None)
    s.add_argument("--seconds", type=int, default=None)
    s.add_argument("--limit", type=int, default=None)
    s.set_defaults(run=cmd_step_row)

    s = sub.add_parser("profile")
    s.add_argument("--device", default="gpu")
    s.add_argument("--precision", default="bf16")
    s.add_argument("--image-size", type=int, default=224)
    s.add_argument("--batch-size", type=int, default=128)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--timed", type=int, default=20)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--top", type=int, default=15)
    s.set_defaults(run=cmd_profile)

    s = sub.add_parser("summary")
    s.add_argument("--rows", required=True)
    s.set_defaults(run=cmd_summary)

    args = p.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
