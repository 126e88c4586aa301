"""Data-parallel training through each framework's own engine, on 127.0.0.1: two workers train one model, the
engine's launcher starts the same run, two workers take the steps one process takes, faults end cleanly.

Every process a test starts carries a tag in its environment; after each test no tagged process is left.
"""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from nin_common.arch import weights as W
from nin_common.engine import distributed as D
from nin_common.engine import checkpoint, launch, registry
from nin_common.tools.parity import dataparallel
from conftest import require_installed

# make test runs the suite in two pytest processes; these tests run one after another in one of them (each starts
# two or three processes of its own, and one job's workers meeting on 127.0.0.1 is all they ask of the machine)
pytestmark = pytest.mark.xdist_group("distributed")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 67
# 4 global batches of 32 (2 workers x 16), 64 validation images: tiny, still one model trained by two workers;
# a constant learning rate, so that a run of 1 epoch resumed to 2 takes the steps of a run of 2
TINY_CLI = ["--recipe", "quick", "--schedule", "constant", "--warmup", "0", "--image-size", str(SIZE),
            "--batch-size", "32", "--limit-train", "128",
            "--limit-val", "64", "--device", "cpu", "--precision", "fp32", "--no-progress"]
JOB_TIMEOUT_S = 300


def has_engine(name):
    """Whether the backend trains data-parallel (its distributed module says ``AVAILABLE = False`` otherwise)."""
    from conftest import load_backend

    load_backend(name)
    return getattr(registry.part(name, "distributed"), "AVAILABLE", True)


# the backends that train with several workers: all of them (a backend without an engine would say
# ``AVAILABLE = False`` in its distributed module and refuse --workers in one line)
ENGINES = list(registry.BACKENDS)


@pytest.fixture
def tagged(tmp_path):
    """The environment for the processes of one test (tagged; temporary files under tmp_path), and the check
    that none of them is left when the test ends."""
    tag = uuid.uuid4().hex
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, NIN_TEST_TAG=tag, TMPDIR=str(tmp), NIN_DIST_TIMEOUT="30",
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                    if p]))
    yield env
    deadline = time.monotonic() + 10
    while tagged_processes(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = tagged_processes(tag)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left behind: {left}"


def tagged_processes(tag):
    found = []
    for path in glob.glob("/proc/[0-9]*/environ"):
        try:
            with open(path, "rb") as f:
                if f"NIN_TEST_TAG={tag}".encode() in f.read().split(b"\0"):
                    pid = int(path.split("/")[2])
                    with open(f"/proc/{pid}/stat") as s:
                        if s.read().rsplit(")", 1)[1].split()[0] != "Z":
                            found.append(pid)
        except (OSError, ValueError):
            continue
    return found


def nin(env, *argv, timeout=JOB_TIMEOUT_S):
    return subprocess.run([sys.executable, "-m", "nin_common.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def one_line(proc, *fragments):
    """The process failed with one line on stderr (no traceback) naming each fragment; returns the line."""
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert lines and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def rows_of(run):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def final_weights(run):
    return W.load_npz(os.path.join(checkpoint.find_checkpoint(run), "model.npz"))[0]


def dist_of(name):
    from conftest import load_backend

    load_backend(name)
    return registry.part(name, "distributed")


def engine_launch(name, env, argv, port=None):
    """Start the workers as the engine's own launcher does (``torchrun``, MXNet's launch.py, one process per
    worker with TF_CONFIG or JAX's coordinator variables), without nin's launcher watching; wait for them."""
    plan = registry.launching(name).launch_plan(2, [sys.executable, "-m", "nin_common.cli", *argv], 1, port)
    procs = [subprocess.Popen(p.argv, env=dict(env, **p.env), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in plan]
    outs = [p.communicate(timeout=JOB_TIMEOUT_S) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return outs


def kill_worker_1_after_a_checkpoint(name, env, run):
    """``nin train --workers 2`` until the first checkpoint, then SIGKILL to worker 1: the job ends within 60 s
    with one line naming the lost worker (no traceback); returns the epoch of the checkpoint left."""
    argv = [sys.executable, "-m", "nin_common.cli", "train", "--backend", name, "--workers", "2", "--epochs", "20",
            "--out", run, *TINY_CLI]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        pid_files = []
        while time.monotonic() < deadline and proc.poll() is None:
            pid_files = glob.glob(os.path.join(env["TMPDIR"], "nin-job-*", "worker-1.pid"))
            try:
                epoch = checkpoint.read_state(checkpoint.find_checkpoint(run))["epoch"]
            except (FileNotFoundError, ValueError):
                epoch = 0
            if pid_files and epoch >= 1:
                break
            time.sleep(0.2)
        assert pid_files and proc.poll() is None, proc.communicate()[1][-3000:]
        with open(pid_files[0]) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=90)
        assert time.monotonic() - killed < 60
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert "2 workers" in out, out
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err and all(line.startswith("nin train: error: ") for line in lines), err[-3000:]
    assert len(lines) <= 2 and "worker 1 of 2" in lines[-1] and "--resume" in lines[-1], err[-3000:]
    epoch = checkpoint.read_state(checkpoint.find_checkpoint(run))["epoch"]
    assert 1 <= epoch < 20
    return epoch


@pytest.mark.parametrize("name", ENGINES)
def test_two_workers_lose_one_resume_and_match_the_engines_launcher(name, tmp_path, tagged):
    """``nin train --workers 2`` with worker 1 killed (SIGKILL) mid-run: the job ends within 60 s with one line
    naming the lost worker and no process left, and its last checkpoint is good.  Resumed with the same workers,
    it ends bit-identical to the same epochs started uninterrupted by the engine's own launcher (``torchrun``,
    MXNet's launch.py, TF_CONFIG or JAX's coordinator variables per process); resumed with 1 worker, it
    continues."""
    require_installed(name)
    run, straight = str(tmp_path / "run"), str(tmp_path / "straight")
    epoch = kill_worker_1_after_a_checkpoint(name, tagged, run)
    resumed = nin(tagged, "train", "--resume", run, "--epochs", str(epoch + 1), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "2 workers" in resumed.stdout and resumed.stdout.count(f"epoch {epoch + 1}/{epoch + 1}") == 1

    engine_launch(name, tagged, ["train", "--backend", name, "--epochs", str(epoch + 1), "--out", straight,
                                 *TINY_CLI])
    rows = rows_of(straight)
    assert [r["workers"] for r in rows] == [2] * (epoch + 1) and {r["n_train"] for r in rows} == {128}
    assert all(r["n_val"] == 64 for r in rows)
    final, expected = final_weights(run), final_weights(straight)
    assert max(float(np.abs(final[k] - expected[k]).max()) for k in expected) == 0
    assert [r["workers"] for r in rows_of(run)] == [2] * (epoch + 1)

    other = nin(tagged, "train", "--resume", run, "--epochs", str(epoch + 2), "--workers", "1", "--no-progress")
    assert other.returncode == 0, other.stderr[-3000:]
    assert [r["workers"] for r in rows_of(run)] == [2] * (epoch + 1) + [1]
    assert [r["epoch"] for r in rows_of(run)] == list(range(1, epoch + 3))


@pytest.mark.parametrize("name", ENGINES)
def test_two_workers_take_the_steps_of_one_process(name, tmp_path, tagged, monkeypatch):
    """Float64, dropout off: SGD steps on 2 workers x 4 images end with the weights of the same steps on 8 images
    in one process (element-wise, 1e-10 relative); float32 within the bound the module derives.  (``nin parity
    --workers 2`` runs it at 2 x 64 against 128; here it is kept small for the suite's time.)"""
    dist_of(name)
    for key in ("NIN_TEST_TAG", "TMPDIR", "NIN_DIST_TIMEOUT"):
        monkeypatch.setenv(key, tagged[key])
    results = dataparallel.compare(name, str(tmp_path), steps=2, batch=8)
    failed = [r for r in results if not r.passed]
    assert results and not failed, failed
    assert {r.dtype for r in results} == {"float64", "float32"}


@pytest.mark.parametrize("name", ENGINES)
def test_a_port_in_use_is_one_line_and_nothing_is_written(name, tmp_path, tagged):
    require_installed(name)
    run = tmp_path / "run"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = nin(tagged, "train", "--backend", name, "--workers", "2", "--port", str(port), "--out", str(run),
                   *TINY_CLI, timeout=120)
    assert proc.returncode == 2
    one_line(proc, str(port), "in use")
    assert not run.exists() or not any(run.iterdir())


@pytest.mark.parametrize("name", ENGINES)
def test_the_launcher_never_imports_the_framework(name, tmp_path, tagged):
    """``nin train --workers 2`` launches; only the workers import the framework (here the launch is refused, a
    port in use, after the launching module has made its plan)."""
    require_installed(name)
    framework = registry.info(name).module
    script = ("import runpy, socket, sys\n"
              "busy = socket.socket(); busy.bind(('127.0.0.1', 0)); busy.listen()\n"
              f"sys.argv = ['nin', 'train', '--backend', {name!r}, '--workers', '2', '--port', "
              "str(busy.getsockname()[1]), '--recipe', 'quick', '--limit-train', '128', '--no-progress', "
              f"'--out', {str(tmp_path / 'run')!r}]\n"
              "try:\n    runpy.run_module('nin_common.cli', run_name='__main__')\nexcept SystemExit as end:\n"
              "    code = end.code\n"
              f"print(code, {framework!r} in sys.modules, {registry.info(name).package!r} in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], env=tagged, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.stdout.split() == ["2", "False", "False"], proc.stdout + proc.stderr[-2000:]
    one_line(proc, "in use")


@pytest.mark.parametrize("name", ENGINES)
def test_an_unreachable_coordinator_is_one_line_in_bounded_time(name, tmp_path, tagged):
    """A worker told (by its launcher's variables) to meet at a port nobody listens on gives up with one line."""
    dist_of(name)
    port = D.free_port()
    env = dict(tagged, NIN_DIST_TIMEOUT="2", **registry.launching(name).worker_environment(2, 1, port))
    start = time.monotonic()
    proc = nin(env, "train", "--backend", name, "--out", str(tmp_path / "run"), *TINY_CLI, timeout=120)
    assert time.monotonic() - start < 60
    assert proc.returncode == 2, proc.stderr[-3000:]
    one_line(proc, str(port))
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("name", ENGINES)
def test_a_worker_that_cannot_import_its_framework_is_one_line(name, tmp_path, tagged):
    broken = tmp_path / "broken" / registry.info(name).module
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this worker has no framework')\n")
    env = dict(tagged, PYTHONPATH=os.pathsep.join([str(broken.parent), tagged["PYTHONPATH"]]),
               **registry.launching(name).worker_environment(2, 1, D.free_port()))
    proc = nin(env, "train", "--backend", name, "--out", str(tmp_path / "run"), *TINY_CLI, timeout=120)
    assert proc.returncode == 2
    one_line(proc, "this worker has no framework")


def test_a_batch_the_workers_cannot_split_is_refused_in_one_line():
    with pytest.raises(ValueError, match="a multiple of 3"):
        D.check_world(D.World(size=3), 128, 60000)
    with pytest.raises(ValueError, match="last batch of 1 image"):
        D.check_world(D.World(size=2), 128, 129)
    D.check_world(D.World(size=2), 128, 60000)


def test_the_workers_shares_are_the_single_process_epoch():
    """Each global batch cut into contiguous slices: disjoint, and together the batch, in order."""
    for n, size in ((128, 2), (96, 2), (33, 2), (128, 4), (7, 3)):
        parts = [D.local_slice(n, D.World(size=size, rank=r)) for r in range(size)]
        assert np.concatenate([np.arange(n)[p] for p in parts]).tolist() == list(range(n))
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_dropout_seeds_differ_per_worker_and_rank_0_draws_the_single_process_seed():
    seeds = {D.worker_seed(0, e, r) for e in (1, 2) for r in (0, 1, 2)}
    assert len(seeds) == 6
    assert D.worker_seed(3, 1, 0) == int(np.random.SeedSequence([3, 1]).generate_state(1)[0] >> 1)


def test_the_launcher_stops_every_worker_when_one_is_lost(tmp_path, tagged, monkeypatch):
    """Framework-free: of two sleeping workers one dies; the watcher stops the other and says which was lost."""
    script = ("import os, sys, time\n"
              "from nin_common.engine import launch\n"
              "rank = int(os.environ['R'])\n"
              "launch.register(rank)\n"
              "time.sleep(1 if rank == 1 else 600)\n"
              "sys.exit(3 if rank == 1 else 0)\n")
    plan = [launch.Process([sys.executable, "-c", script], {"R": str(r)}, f"worker {r}") for r in (0, 1)]
    monkeypatch.setattr(launch, "registry", type("R", (), {"launching": staticmethod(
        lambda name: type("P", (), {"launch_plan": staticmethod(lambda *a: plan)}))}))
    for key, value in tagged.items():
        monkeypatch.setenv(key, value)
    start = time.monotonic()
    with pytest.raises(launch.JobFailed, match="worker 1 of 2 ended with exit status 3"):
        launch.start("any", 2, [], timeout_s=120)
    assert time.monotonic() - start < 30


def test_the_lost_worker_is_named_when_the_others_are_gone_too(tmp_path, tagged, monkeypatch):
    """Framework-free, as under torchrun: one launcher process starts two workers; worker 1 is killed and worker
    0, stopped by the launcher within the same instant, says it lost the others.  By the time the watcher looks
    both are gone (and the launcher too); it names worker 1, the one that was lost."""
    script = ("import os, signal, subprocess, sys, time\n"
              "from nin_common.engine import launch\n"
              "if 'R' not in os.environ:\n"
              "    kids = [subprocess.Popen([sys.executable, '-c', sys.argv[1]], env=dict(os.environ, R=str(r)))\n"
              "            for r in (0, 1)]\n"
              "    kids[1].wait()\n"
              "    kids[0].terminate(); kids[0].wait()\n"
              "    sys.exit(1)\n"
              "rank = int(os.environ['R'])\n"
              "launch.register(rank)\n"
              "time.sleep(2)\n"
              "if rank == 1:\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "time.sleep(600)\n")
    plan = [launch.Process([sys.executable, "-c", script, script], {}, "torchrun")]
    monkeypatch.setattr(launch, "POLL_S", 5.0)  # the watcher looks only after everything has ended
    monkeypatch.setattr(launch, "registry", type("R", (), {"launching": staticmethod(
        lambda name: type("P", (), {"launch_plan": staticmethod(lambda *a: plan)}))}))
    for key, value in tagged.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(launch.JobFailed, match="^worker 1 of 2 is gone"):
        launch.start("any", 2, [], timeout_s=120)


def test_the_backends_without_an_engine_are_exactly_the_listed_ones():
    assert [n for n in registry.BACKENDS if not has_engine(n)] == [n for n in registry.BACKENDS if n not in ENGINES]


def test_a_torch_worker_frees_ddp_before_it_destroys_its_process_group(tmp_path, tagged):
    """DDP's reducer holds the process group, and DDP sits in reference cycles: left to the interpreter's exit, it
    outlived the group's destruction, and gloo's teardown then aborted a worker whose run had ended well, now and
    then.  A worker's group frees the wrapper it made before it destroys the group, even while the trainer (an
    exception's frames) is still held."""
    dist_of("torch")
    port = D.free_port()
    script = ("import gc, os\n"
              "import numpy as np\n"
              f"os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='{port}')\n"
              "from torch.nn.parallel import DistributedDataParallel\n"
              "from nin_common.engine import distributed as D\n"
              "from nin_torch import NiN, distributed, training\n"
              f"group = distributed.join(D.World(size=1, coordinator='127.0.0.1:{port}'), 'cpu')\n"
              "trainer = training.Trainer(NiN(image_size=67), 0.01, 'cpu', 'fp32', group=group)\n"
              "trainer.train_step(np.zeros((2, 28, 28), np.uint8), np.array([1, 2]), 67)\n"
              "alive = lambda: sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())\n"
              "before = alive()\n"
              "group.leave()\n"
              "import torch.distributed as dist\n"
              "print(before, alive(), dist.is_initialized())\n")
    proc = subprocess.run([sys.executable, "-c", script], env=tagged, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.stdout.split() == ["1", "0", "False"], proc.stdout + proc.stderr[-2000:]


def test_torch_workers_on_gpus_meet_over_nccl_one_gpu_each(monkeypatch):
    """On GPUs, PyTorch's workers meet over NCCL, each on a GPU of its own (LOCAL_RANK); CPU workers over gloo;
    more workers than GPUs on a machine is one line (NCCL cannot put two on one GPU).  CUDA's answers are
    stood in for, so that this holds on a machine without a GPU."""
    from conftest import load_backend

    load_backend("torch")
    import torch

    from nin_torch import distributed as torch_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for gpus, device, workers, expected in [(1, "auto", 1, "nccl"), (2, "auto", 2, "nccl"), (4, "gpu", 2, "nccl"),
                                             (2, "cpu", 2, "gloo"), (8, "cpu", 1, "gloo")]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda gpus=gpus: gpus)
        assert torch_distributed.transport(device, workers) == expected, (gpus, device, workers)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^expected a GPU for each of the 2 workers on this machine \(NCCL\), got 1: "
                                         r"use --workers 1 or fewer, or --device cpu$"):
        torch_distributed.transport("gpu", 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert torch_distributed.transport("auto", 2) == "gloo"
