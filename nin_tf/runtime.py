"""Everything the TensorFlow backend does to the process, in one place (``nin_tf/__init__`` imports this first).

``nin_common.util.runtime.prepare("tensorflow")`` first: it loads the system's libstdc++ before TensorFlow does,
so that TensorFlow's own copies of libstdc++ functions cannot take the place of libstdc++'s in other
frameworks (MXNet crashed after TensorFlow without it; see that module).  TensorFlow's start-up chatter is
kept out of the way unless you set ``TF_CPP_MIN_LOG_LEVEL`` yourself, oneDNN's CPU kernels are on unless you
set ``TF_ENABLE_ONEDNN_OPTS`` yourself, and on a GPU TensorFlow grows its memory instead of taking it all unless you
set ``TF_FORCE_GPU_ALLOW_GROWTH`` yourself (``ENVIRONMENT`` says why).

* ``full_float32()``: what ``nin parity`` switches on (``parity.parity_mode``): no TF32 on a GPU.
* ``dtype_policy(name)``: Keras layers take their dtype from a process-wide policy when they are created; the
  float64 copies of ``nin parity`` are built under ``"float64"``, which is restored after, whatever happens.
  (The bf16 Trainer sets its layers' own policies instead, never the global one: ``training.compute_policy``.)
* ``worker_threads(n)``, ``worker_gpu(rank)``, ``native_log_quiet()`` and ``sigterm_ends_the_process()``: what
  a data-parallel worker (``distributed.join``) does to its process when it joins the others: its share of the
  cores, its one GPU, the distributed runtime's start-up messages kept off stderr, and SIGTERM that stops it
  again (see each for why).
"""
import os

from nin_common.util import runtime

runtime.prepare("tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import signal  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402


@contextmanager
def native_log_quiet():
    """The C++ side's writes to stderr (file descriptor 2) discarded for the block, unless TF_CPP_MIN_LOG_LEVEL
    asks for INFO messages (0).

    Workaround: in TensorFlow 2.17 to 2.21, the gRPC server and the coordination service agent that
    ``MultiWorkerMirroredStrategy`` starts log through Abseil, which writes every message to stderr until
    ``absl::InitializeLog()`` is called (TensorFlow never calls it, and its copy of Abseil is not reachable
    from Python), whatever TF_CPP_MIN_LOG_LEVEL says: "Started server with target: ..." and "Coordination
    agent has successfully connected" on every worker.  Python's own writes to stderr in the block are
    discarded too; what fails in it raises, and the caller reports it.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


# Workaround (TensorFlow 2.19 and later): importing TensorFlow logs through Abseil before anything calls
# absl::InitializeLog(), so its messages go to stderr whatever TF_CPP_MIN_LOG_LEVEL says ("oneDNN custom operations
# are on ..." on every import); the import runs with those writes discarded unless INFO messages are asked for.
with native_log_quiet():
    import tensorflow as tf  # noqa: E402
    from tensorflow import keras  # noqa: E402

# environment variables importing the backend sets (and why)
ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2 unless set: TensorFlow's start-up chatter out of the way",
               "TF_ENABLE_ONEDNN_OPTS": "1 unless set: oneDNN's CPU kernels on every x86 CPU. TensorFlow switches "
                                        "them on by itself only where the CPU has AVX512-VNNI/BF16 or AMX; on an "
                                        "AVX2-only CPU its own kernels trained NiN at 0.42-0.54 of the fp32 peak, "
                                        "oneDNN's at 0.78-0.88 (docs/speed.md). Read when TensorFlow first asks, "
                                        "so it also holds where TensorFlow was imported first but has run nothing",
               "TF_FORCE_GPU_ALLOW_GROWTH": "true unless set: on a GPU, TensorFlow takes nearly all its memory when "
                                            "its runtime starts, so a second process on the same GPU fails; it "
                                            "grows its share as it needs instead. Read when the runtime starts"}


def full_float32() -> None:
    tf.config.experimental.enable_tensor_float_32_execution(False)


@contextmanager
def dtype_policy(name: str):
    """Keras' global dtype policy set to ``name`` for the block, and restored after."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def worker_threads(threads: int) -> None:
    """This process's intra-op thread pool (its share of the cores, ``NIN_WORKER_THREADS``); TensorFlow fixes the
    pool when its runtime starts, so a later call leaves it as it is."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    except RuntimeError:  # the runtime has started: the pool is fixed
        pass


def worker_gpu(rank: int) -> None:
    """One GPU per worker process (the strategy makes one replica per GPU a process sees, and a worker feeds one):
    worker ``rank`` sees only GPU ``rank`` modulo the GPUs of its machine; nothing where there is none."""
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        try:
            tf.config.set_visible_devices([gpus[rank % len(gpus)]], "GPU")
        except RuntimeError:  # the runtime has started: the devices are fixed
            pass


def sigterm_ends_the_process() -> None:
    """SIGTERM's default action (end the process) back, after the strategy has started the distributed runtime.

    Workaround: TensorFlow's coordination service installs a SIGTERM handler of its own (its "sigterm"
    preemption notifier, for ``tf.distribute.experimental.PreemptionCheckpointHandler``), which only records
    the time and lets the process run on; a launcher or cluster manager that stops a job with SIGTERM then
    waits for its SIGKILL.  These workers keep no preemption checkpoints: SIGTERM ends them, as it ends any
    process.  (Main thread only, as ``join`` is called.)"""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
