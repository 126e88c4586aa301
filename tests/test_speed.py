"""Precision in the trainers, ``nin bench`` and the speed benchmark: correctness only (speed is never asserted)."""
import argparse
import importlib
import json
import os

import numpy as np
import pytest

from nin_common.arch.shapes import batch_shape
from nin_common.engine import precision, registry
from nin_common.tools import bench
from nin_common import cli
from nin_common.util import machine
from conftest import BF16, assert_reads_at_80, load_backend, training_of

SIZE = 67  # the smallest image the chapter's network takes
# of the backends that train in bf16 (conftest.BF16), those whose CPU path computes bf16 natively where the CPU
# can (XLA's CPU backend has no bf16 convolutions: nin_jax.training.bf16_native)
CPU_BF16 = ("torch", "tf")
HERE = os.path.dirname(os.path.abspath(__file__))



def trainer(backend, precision, lr=0.05, seed=0):
    return training_of(backend).Trainer(training_of(backend).build_model("cpu", seed=seed, init="kaiming", image_size=SIZE), lr,
                                 "cpu", precision)


def fixed_batch(n=4):
    split = bench.synthetic_split(n, seed=3)
    return split.images, split.labels


def test_resolve_precision():
    assert precision.resolve_precision("auto", True, "torch") == "bf16"
    assert precision.resolve_precision("auto", False, "torch") == "fp32"
    assert precision.resolve_precision("fp32", True, "tf") == "fp32"
    assert precision.resolve_precision("bf16", False, "tf") == "bf16"  # asked for: slow where not native, still right
    assert precision.resolve_precision("auto", True, "mxnet", bf16_why_not="no") == "fp32"
    with pytest.raises(ValueError, match="precision bf16 is not available in MXNet: no; use fp32"):
        precision.resolve_precision("bf16", True, "mxnet", bf16_why_not="no")
    with pytest.raises(ValueError, match="expected precision to be one of auto, fp32, bf16, got 'float16'"):
        precision.resolve_precision("float16", True, "torch")


def test_bad_precision_same_message_everywhere(all_backends):
    for b in all_backends:
        with pytest.raises(ValueError, match="expected precision to be one of auto, fp32, bf16, got 'fp16'"):
            trainer(b, "fp16")


def test_auto_is_bf16_only_where_the_cpu_computes_it(backend, monkeypatch):
    """``auto`` follows the CPU's bf16 instructions (faked here); MXNet stays fp32 (it cannot train in bf16),
    and JAX too (XLA computes bf16 convolutions on a CPU in float32, slower than fp32 ones).

    The CPU is faked where ``machine.cpu_bf16`` reads it (``machine.cpu_flags``): a backend's ``bf16_native``
    that asks the CPU goes through it however the backend imported ``cpu_bf16``, so the fake is in effect in
    every backend."""
    expected = {True: "bf16" if backend.BACKEND in CPU_BF16 else "fp32", False: "fp32"}
    for native in (True, False):
        monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16"} if native else {"avx2"}))
        assert machine.cpu_bf16() is native  # the fake is what the CPU says now
        auto = trainer(backend, "auto")
        # the backend's own decision for its CPU device, where Trainer reads it
        assert training_of(backend).bf16_native(auto.device) is (native and backend.BACKEND in CPU_BF16)
        assert auto.precision == expected[native]
        assert trainer(backend, "fp32").precision == "fp32"


def test_mxnet_refuses_bf16_saying_why():
    mxnet = load_backend("mxnet")
    with pytest.raises(ValueError, match="precision bf16 is not available in MXNet: MXNet 1.9's AMP converts only"):
        trainer(mxnet, "bf16")


@pytest.mark.parametrize("name", BF16)
def test_bf16_computes_in_bfloat16_keeps_float32_weights_and_learns(name):
    """Same weights, same images: bf16 losses differ from fp32 ones by bf16 rounding (so bf16 really runs) but
    little; the weights stay float32 and canonical and move.  (That bf16 learns as fp32 does is checked on real
    images in test_precision.py: on these random ones even fp32 does not lower the loss in 15 steps at lr 0.03.)"""
    b = load_backend(name)
    images, labels = fixed_batch()
    fp32, bf16 = trainer(b, "fp32", lr=0.03), trainer(b, "bf16", lr=0.03)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    loss32, loss16 = fp32.eval_step(images, labels, SIZE)[0], bf16.eval_step(images, labels, SIZE)[0]
    assert 0 < abs(loss16 - loss32) < 0.05 * loss32, (loss32, loss16)

    bf16.reseed(1)
    losses = [bf16.train_step(images, labels, SIZE)[0] / 4 for _ in range(15)]
    end = bf16.eval_step(images, labels, SIZE)[0] / 4
    assert np.all(np.isfinite(losses)) and np.isfinite(end), (end, losses)
    weights = b.export_weights(bf16.model)
    assert {w.dtype for w in weights.values()} == {np.dtype(np.float32)}
    moved = max(float(np.abs(weights[k] - v).max()) for k, v in b.export_weights(fp32.model).items())
    assert moved > 0
    # the model itself is left computing in float32 (its precision belongs to the trainer)
    x = np.zeros(batch_shape(b.DATA_FORMAT, 1, 1, SIZE), np.float32)
    assert b.predict(bf16.model, x).dtype == np.float32


BENCH_KEYS = {"train_images_per_s", "infer_images_per_s", "latency_ms", "peak_memory_mb", "device", "precision",
              "pipeline_images_per_s", "batch_size", "image_size", "framework"}


def process_peak_mib() -> float:
    """This process's peak resident memory in MiB, asked of the OS here (not through ``nin_common``)."""
    import platform
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if platform.system() == "Darwin" else 2**10)


def test_nin_bench_json_at_a_tiny_size(backend, capsys):
    argv = ["bench", "--backend", backend.BACKEND, "--batch-size", "3", "--image-size", str(SIZE), "--steps", "2",
            "--warmup", "1", "--latency-runs", "2", "--precision", "fp32", "--device", "cpu", "--json"]
    before = process_peak_mib()
    assert cli.main(argv) == 0
    after = process_peak_mib()
    result = json.loads(capsys.readouterr().out)
    assert BENCH_KEYS <= set(result)
    for key in ("train_images_per_s", "infer_images_per_s", "latency_ms", "peak_memory_mb", "pipeline_images_per_s"):
        assert np.isfinite(result[key]) and result[key] > 0, key
    assert (result["precision"], result["batch_size"], result["image_size"]) == ("fp32", 3, SIZE)
    assert len(result["train_step_s"]) == 2 and result["backend"] == backend.BACKEND
    # On the CPU no trainer has a device peak, so both figures are the process's peak resident memory.  The OS
    # counts that peak only upwards, so what bench read during its run lies between the peak read here before
    # it and the peak read after it (a figure in another unit falls outside).
    for key in ("peak_memory_mb", "peak_rss_mb"):
        assert before <= result[key] <= after, (key, before, result[key], after)
    assert registry.framework(backend.BACKEND) in result["framework"]
    text = bench.report(result)
    assert "training" in text and "latency" in text and f"precision {result['precision']}" in text
    assert f"{result['peak_memory_mb']:10.1f} MiB (peak resident)" in text



@pytest.mark.parametrize("columns", [None, "80"])
def test_bench_report_reads_whole_at_80_columns(monkeypatch, capsys, columns):
    # plain lines, whatever the width: the widest realistic figures, a GPU's name and every thread setting
    result = dict(backend="torch", framework="PyTorch 2.13.0+cu128", device="cuda:0 (NVIDIA H100 80GB HBM3)",
                  precision="bf16", batch_size=1024, image_size=224, steps=100, warmup=20,
                  train_images_per_s=123456.7, infer_images_per_s=987654.3, latency_ms=1234.5,
                  pipeline_images_per_s=1234567.8, peak_memory_mb=81234.5, peak_rss_mb=12345.6,
                  load_avg=[123.45, 100.25, 99.75], threads={k: "0,1,2,3,4,5,6,7" for k in machine.THREAD_VARIABLES})
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: result)
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli.main(["bench", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert_reads_at_80(out, "2.13.0+cu128", "1024,", "123456.7", "987654.3", "1234.5", "1234567.8",
                       "81234.5", "[123.45,", *[f"{k}=0,1,2,3,4,5,6,7" for k in machine.THREAD_VARIABLES])


@pytest.mark.parametrize("option,value,message", [
    ("--steps", "0", "argument --steps: expected a positive integer, got '0'"),
    ("--image-size", "40", "expected image_size to be an integer >= 67, got 40"),
    ("--latency-runs", "0", "argument --latency-runs: expected a positive integer, got '0'"),
    ("--warmup", "-1", "argument --warmup: expected a non-negative integer, got '-1'"),
])
def test_nin_bench_bad_arguments(backend, option, value, message, capsys):
    assert cli.main(["bench", "--backend", backend.BACKEND, option, value]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flags,generation,mhz,expected", [
    ({"avx2", "fma"}, "family 25 model 1", 2450.0, 2 * 2 * 8 * 2 * 2.45),           # Zen 3
    ({"avx2", "fma", "avx512f"}, "family 6 model 143", 2000.0, 2 * 2 * 16 * 2 * 2.0),  # Sapphire Rapids
    ({"avx2", "fma", "avx512f"}, "family 25 model 17", 2450.0, 2 * 2 * 8 * 2 * 2.45),  # Zen 4: AVX-512 in halves
    ({"sse2"}, "", 2000.0, None), ({"avx2", "fma"}, "", None, None)])
def test_nominal_fp32_peak(monkeypatch, flags, generation, mhz, expected):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(machine, "cpu_generation", lambda: generation)
    monkeypatch.setattr(machine, "cpu_mhz", lambda: mhz)
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    peak = machine.nominal_fp32_peak()
    assert (peak and peak["gflops"]) == (expected and pytest.approx(expected, abs=0.1))


def test_thread_defaults_leave_a_user_setting_alone(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert machine.thread_defaults() == {}
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert machine.thread_defaults() == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_physical_cores_counts_hyper_threads_once(tmp_path):
    section = "processor\t: {}\nphysical id\t: {}\ncore id\t\t: {}\nflags\t\t: avx2\n\n"
    # two sockets, two cores each, two hyper-threads per core: CPUs 0-3 on socket 0, 4-7 on socket 1
    text = "".join(section.format(cpu, cpu // 4, cpu % 2) for cpu in range(8))
    (tmp_path / "cpuinfo").write_text(text)
    assert machine.physical_cores(str(tmp_path / "cpuinfo"), allowed=set(range(8))) == 4
    assert machine.physical_cores(str(tmp_path / "cpuinfo"), allowed={0, 2, 4}) == 2  # 0 and 2 share a core
    (tmp_path / "empty").write_text("processor\t: 0\n\n")  # no core ids (some VMs, ARM)
    assert machine.physical_cores(str(tmp_path / "empty")) == machine.available_cpus()
    assert 1 <= machine.physical_cores() <= machine.available_cpus()


def test_keep_freed_memory_takes_effect_on_glibc_and_can_be_refused(monkeypatch):
    import platform
    monkeypatch.setenv("NIN_KEEP_FREED_MEMORY", "0")
    assert machine.keep_freed_memory() is False
    monkeypatch.delenv("NIN_KEEP_FREED_MEMORY")
    assert machine.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")


def test_keep_freed_memory_sets_malloc_once_per_process(monkeypatch):
    """The setting is made by the first call of a process: glibc's ``mallopt`` twice (``M_MMAP_MAX`` 0, then
    ``M_TRIM_THRESHOLD`` to its maximum); every later call (each ``make_trainer`` makes one) answers from that
    first result without calling it again, and ``NIN_KEEP_FREED_MEMORY=0`` makes no call at all."""
    import ctypes
    import ctypes.util
    import platform
    import types

    calls = []

    class Libc:  # the C library, with its mallopt calls recorded (and still made)
        def __init__(self, name):
            self.lib = ctypes.CDLL(name)

        def mallopt(self, param, value):
            calls.append((param, value))
            return self.lib.mallopt(param, value)

    monkeypatch.setattr(machine, "ctypes", types.SimpleNamespace(CDLL=Libc, util=ctypes.util))
    monkeypatch.setattr(machine, "_kept_freed_memory", None)  # as in a process that has not made it yet
    monkeypatch.setenv("NIN_KEEP_FREED_MEMORY", "0")
    assert machine.keep_freed_memory() is False and calls == []
    monkeypatch.delenv("NIN_KEEP_FREED_MEMORY")
    glibc = platform.libc_ver()[0] == "glibc"
    assert [machine.keep_freed_memory() for _ in range(4)] == [glibc] * 4
    assert calls == ([(machine.M_MMAP_MAX, 0), (machine.M_TRIM_THRESHOLD, machine.INT_MAX)] if glibc else [])


def test_keep_freed_memory_keeps_large_blocks_in_the_heap():
    """What the setting does, seen through glibc's own accounting (``mallinfo2``): after it, a 64 MiB block
    (over glibc's largest mmap threshold, 32 MiB) comes from the heap, not from ``mmap``, and freeing it
    leaves the heap as large as it was (nothing is trimmed)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                         "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc.mallinfo2.restype = Mallinfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 2**20
    assert machine.keep_freed_memory() is True  # in effect from here on in this process
    before = libc.mallinfo2()
    block = libc.malloc(size)
    assert block
    during = libc.mallinfo2()
    libc.free(block)
    after = libc.mallinfo2()
    # other threads of this process may map or allocate a little meanwhile: less than the block
    assert during.hblkhd - before.hblkhd < size, "the block was mapped with mmap"
    assert during.uordblks - before.uordblks >= size, "the block is not in the heap"
    assert after.arena >= during.arena, "freeing the block gave heap memory back to the system"


def test_memory_setting_is_made_where_a_run_starts_not_by_the_library(backend, monkeypatch):
    """Building a Trainer changes nothing process-wide; ``Trainer.create`` (used by fit, and through
    ``make_trainer`` by evaluate and bench) does, once."""
    from nin_common.engine import trainer, training

    def refuse():
        raise AssertionError("a Trainer made a process-wide setting")

    calls = []
    monkeypatch.setattr(machine, "keep_freed_memory", refuse)
    monkeypatch.setattr(trainer, "keep_freed_memory", lambda: calls.append(1) or True)
    model = training_of(backend).build_model("cpu", seed=0, image_size=SIZE)
    training_of(backend).Trainer(model, 0.05, "cpu", "fp32")
    assert calls == []
    training.make_trainer(backend.BACKEND, model, 0.05, "cpu", "fp32")
    assert calls == [1]


@pytest.mark.parametrize("preset", [None, "3"])
def test_importing_nin_mxnet_leaves_omp_num_threads_as_it_found_it(preset):
    """MXNet is imported with OMP_NUM_THREADS set to the physical cores, unless the user set it; then it is
    removed again (a fresh process: MXNet is imported once per process)."""
    import subprocess
    import sys
    load_backend("mxnet")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if preset:
        env["OMP_NUM_THREADS"] = preset
    code = "import os, nin_mxnet; print(os.environ.get('OMP_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(HERE), env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(preset)


def test_speed_benchmark_alternates_and_reports_every_target(backend, monkeypatch):
    """One backend's measurement at a tiny size: the chapter's step and the project's, alternated."""
    monkeypatch.syspath_prepend(os.path.dirname(HERE))
    speed = importlib.import_module("benchmarks.speed")
    args = argparse.Namespace(batch_size=2, image_size=SIZE, warmup=1, rounds=2, device="cpu")
    row = speed.measure(backend.BACKEND, args)
    assert row["backend"] == backend.BACKEND and row["settings"]["rounds"] == 2
    assert len(row["baseline"]["step_s"]) == len(row["default"]["step_s"]) == 2
    assert row["default"]["ratio"] == pytest.approx(row["default"]["train_images_per_s"]
                                                    / row["baseline"]["train_images_per_s"], rel=1e-2)
    assert set(row["targets_met"]) == set(speed.TARGETS)
    assert all(isinstance(v, bool) for v in row["targets_met"].values())
    assert row["project_peak_rss_mb"] > 0 and row["baseline"]["peak_rss_mb"] > 0
    # each side ran in its own process: only the project's made the library's allocator setting
    assert row["machine"]["keep_freed_memory"] == machine.keep_freed_memory()
    assert row["baseline"]["machine"]["keep_freed_memory"] is False
    # the arithmetic: images/s x GFLOP a training image, against the nominal fp32 peak where it is known
    assert row["gflop_per_training_image"] == pytest.approx(3 * 2 * 53.9e6 / 1e9, rel=0.01)  # 67 px: 53.9 M MACs
    assert row["fp32"]["achieved_gflops"] == pytest.approx(row["fp32"]["train_images_per_s"]
                                                           * row["gflop_per_training_image"], rel=1e-2, abs=0.1)
    if row["nominal_fp32_peak"]:
        assert row["fp32"]["fraction_of_fp32_peak"] == pytest.approx(
            row["fp32"]["achieved_gflops"] / row["nominal_fp32_peak"]["gflops"], rel=1e-2, abs=1e-3)
    assert "GFLOP/s" in speed.summary(row)
