"""The training loop, written once and framework-free; each backend drives it through a small adapter.

A backend's ``nin_<b>/training.py`` supplies:

* ``gpu_count()`` - how many GPUs the framework sees;
* ``build_model(device, **model_kwargs)`` - a ``NiN`` created on the device;
* ``Trainer(model, lr, device="auto", precision="auto")`` with ``device_name`` (a string for people),
  ``precision`` (the one it computes in, ``resolve_precision``'s answer) and

  - ``train_step(images_u8, labels, image_size) -> (loss_sum, correct)``: one SGD step on a uint8 batch
    (B, 28, 28) scaled to [0, 1] and resized to ``image_size`` on the device, dropout active;
  - ``eval_step(images_u8, labels, image_size) -> (loss_sum, correct)``: the same without learning, dropout off;
  - ``predict_step(images_u8, image_size) -> logits``: float32 (B, classes) NumPy logits, dropout off;
  - ``prepare(images_u8, labels, image_size)``: only the input pipeline of a step (transfer, scaling, resizing,
    layout), waited for; what ``nin bench`` times to show the pipeline outruns the model;
  - ``peak_memory_mb()``: the device's peak memory so far (None on the CPU, where the process's resident
    memory is the measure);
  - ``reseed(seed)``: re-seed the framework's random state (dropout);
  - ``set_lr(lr)``, ``save_state(folder)``, ``load_state(folder)``: the optimizer's learning rate and state.

  ``loss_sum`` is the batch's summed cross-entropy and ``correct`` its number of right predictions, both
  Python numbers: the one host-device synchronisation per step.

Reproducibility: the batch order of an epoch depends on (seed, epoch) only (``data.batches``), and every
framework's random state is re-seeded from (seed, epoch) at the start of each epoch; with the optimizer's
state saved at each epoch end, a run resumed on the CPU ends with the weights of an uninterrupted one.
"""
from __future__ import annotations

import inspect
import math
import os
import re
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from nin_common.arch.checks import check_input_shape
from nin_common.arch.reference import cross_entropy
from nin_common.arch.shapes import min_image_size
from nin_common.arch.variants import build_spec
from nin_common.arch.weights import INITS
from nin_common.engine import data, launch, recipes, registry
from nin_common.engine.distributed import ALONE, Alone, World, WorkerLost, check_world, local_slice, worker_seed
from nin_common.engine.precision import DEVICES, check_precision
from nin_common.util.progress import bar as progress_bar
from nin_common.engine.runs import (STATE_FORMAT, checkpoint_bytes, find_checkpoint, native_name, read_state,
                                save_training_checkpoint, write_metrics)
from nin_common.util.files import check_writable_folder, clean_temporaries, first_line, folder_lock
from nin_common.util.machine import (keep_freed_memory, load_average, peak_rss_mb, peak_rss_since_reset_mb,
                                 reset_peak_rss, rss_mb)
from nin_common.util.values import check_choice, check_int, check_non_negative, check_positive

# settings a resumed run must share with the run it continues (epochs, lr and device may change)
FIXED_ON_RESUME = ("variant", "init", "seed", "batch_size", "image_size", "limit_train", "limit_val", "precision",
                   "schedule", "warmup")


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; ``step`` and ``epoch`` say where."""

    def __init__(self, message: str, step: int, epoch: int):
        super().__init__(message)
        self.step, self.epoch = step, epoch


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed every framework's random state gets at the start of ``epoch`` on worker ``rank`` (a 31-bit integer;
    ``nin_common.engine.distributed.worker_seed``)."""
    return worker_seed(seed, epoch, rank)


def check_settings(**settings) -> dict:
    """Validate fit's arguments (same messages in every backend); returns them as a dict."""
    for name in ("epochs", "batch_size"):
        check_int(name, settings[name])
    for name in ("limit_train", "limit_val"):
        check_int(name, settings[name], allow_none=True)
    lr = check_positive("lr", settings["lr"])
    check_int("seed", settings["seed"], least=0)
    check_int("image_size", settings["image_size"], least=min_image_size(build_spec(settings["variant"])))
    check_choice("init", settings["init"], INITS)
    check_choice("device", settings["device"], DEVICES)
    check_precision(settings["precision"])
    check_choice("schedule", settings["schedule"], recipes.SCHEDULES)
    warmup = check_non_negative("warmup", settings["warmup"])
    return dict(settings, lr=lr, warmup=warmup)


# ---------------------------------------------------------------- passes over the data

def check_image_size(model, image_size: int) -> None:
    """``image_size`` must suit ``model`` (large enough for its poolings; its own size with a dense head)."""
    shape = (1, model.spec.in_channels, image_size, image_size)
    try:
        check_input_shape(model.spec, shape, "NCHW", model.image_size)
    except ValueError as err:
        raise ValueError(f"image size {image_size}: {err}") from err


def _bar(total: int, desc: str, progress: bool):
    return progress_bar(progress, total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True,
                        mininterval=0.5)


def evaluate(trainer, split: data.Split, batch_size: int, image_size: int, progress: bool = True,
             desc: str = "eval", predictions: Optional[list] = None, group=None) -> Tuple[float, float, float]:
    """(mean loss, accuracy, seconds) of the model over ``split``, dropout off.

    ``predictions``, if given, receives every image's predicted class in order (the pass then runs
    ``predict_step`` and computes the loss from its logits, in float64).  ``group``: the workers of a
    data-parallel run; each evaluates its own contiguous shard and the sums are reduced by the engine, so every
    image is counted once.
    """
    if group is not None and group.world.distributed:
        if predictions is not None:
            raise ValueError("expected predictions from one process, got a data-parallel group")
        part = local_slice(len(split), group.world)
        shard = data.Split(split.name, split.images[part], split.labels[part], split.source)
        loss, acc, seconds = evaluate(trainer, shard, batch_size, image_size, progress, desc)
        total_loss, total_correct, n = group.all_sum([loss * len(shard), acc * len(shard), len(shard)])
        return float(total_loss / n), float(round(total_correct) / n), seconds
    check_image_size(trainer.model, image_size)
    start, loss, correct = time.perf_counter(), 0.0, 0
    with _bar(len(split), desc, progress) as bar:
        for images, labels in data.batches(split, batch_size):
            if predictions is None:
                batch_loss, batch_correct = trainer.eval_step(images, labels, image_size)
            else:
                logits = trainer.predict_step(images, image_size)
                predicted = logits.argmax(axis=1)
                predictions.extend(predicted.tolist())
                batch_loss = cross_entropy(logits, labels) * len(labels)
                batch_correct = int((predicted == labels).sum())
            loss, correct = loss + batch_loss, correct + batch_correct
            bar.update(len(labels))
    return loss / len(split), correct / len(split), time.perf_counter() - start


def train_epoch(trainer, split: data.Split, settings: dict, epoch: int, step: int, progress: bool,
                on_bad_loss: Callable[[int, float, int, int], None], group=None) -> Tuple[float, float, float, int]:
    """One pass of SGD over ``split``: (mean loss, accuracy, seconds, last global step).

    With a data-parallel ``group``, each global batch of the single-process order is cut into the workers'
    contiguous slices (``distributed.local_slice``); each worker steps on its slice, the engine combines the
    gradients, and the step's loss and correct count are summed over the workers, so every worker sees the
    figures of the whole batch (and a non-finite loss anywhere stops all of them at the same step)."""
    group = group or Alone()
    world = group.world
    size, bs = settings["image_size"], settings["batch_size"]
    n_batches = data.num_batches(len(split), bs)
    total, warm = n_batches * settings["epochs"], recipes.warmup_steps(settings["warmup"], n_batches)
    lr = None
    start, loss, correct, seen = time.perf_counter(), 0.0, 0, 0
    with _bar(len(split), f"epoch {epoch}/{settings['epochs']}", progress) as bar:
        for i, (images, labels) in enumerate(data.batches(split, bs, shuffle=True, seed=settings["seed"],
                                                          epoch=epoch), 1):
            step_lr = recipes.lr_at(settings["schedule"], settings["lr"], step, total, warm)
            if step_lr != lr:
                trainer.set_lr(step_lr)
                lr = step_lr
            step += 1
            if world.distributed:
                part = local_slice(len(labels), world)
                batch_loss, batch_correct = trainer.train_step(images[part], labels[part], size,
                                                               global_batch=len(labels))
                batch_loss, batch_correct = group.all_sum([batch_loss, batch_correct])
                batch_loss, batch_correct = float(batch_loss), int(round(batch_correct))
            else:
                batch_loss, batch_correct = trainer.train_step(images, labels, size)
            if not math.isfinite(batch_loss):
                on_bad_loss(step, batch_loss / len(labels), i, n_batches)
            loss, correct, seen = loss + batch_loss, correct + batch_correct, seen + len(labels)
            bar.update(len(labels))
            bar.set_postfix(loss=f"{loss / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False)
    return loss / seen, correct / seen, time.perf_counter() - start, step


def epoch_line(row: dict) -> str:
    """The one line printed after each epoch, under 80 columns so that it does not wrap in a narrow terminal:
    ``epoch 1/10  loss 2.3026/2.3021  acc 0.1016/0.1000  86 img/s  0:00:12`` (train/val; elapsed h:mm:ss)."""
    mins, secs = divmod(int(round(row["elapsed_s"])), 60)
    return (f"epoch {row['epoch']}/{row['epochs']}  loss {row['train_loss']:.4f}/{row['val_loss']:.4f}  "
            f"acc {row['train_acc']:.4f}/{row['val_acc']:.4f}  {row['images_per_s']:,.0f} img/s  "
            f"{mins // 60}:{mins % 60:02d}:{secs:02d}")


# ---------------------------------------------------------------- fit

def make_trainer(backend: str, model, lr: float, device: str = "auto", precision: str = "auto", group=None):
    """The backend's Trainer for a run (training, evaluation, a benchmark).  Where a run starts, the process-wide
    memory setting is made (``keep_freed_memory``: once per process, see nin_common.util.machine).  ``group``: the
    data-parallel workers it trains with (the Trainer then steps through the engine)."""
    keep_freed_memory()
    cls = registry.part(backend, "training").Trainer
    if group is not None and group.world.distributed:
        return cls(model, lr, device, precision, group=group)
    return cls(model, lr, device, precision)


def _backend_impl(backend: str):
    return registry.load(backend), registry.part(backend, "training")


def _say(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def _resumed_state(resume, backend: str, settings: dict) -> Tuple[dict, str]:
    """The state of the run to resume and its checkpoint folder, checked against this run's settings."""
    ckpt = find_checkpoint(resume)
    state = read_state(ckpt)
    if state["backend"] != backend:
        raise ValueError(f"expected a {backend} run to resume, {ckpt} holds a {state['backend']} run")
    diff = [f"{k}={settings[k]!r} (the run has {state['settings'][k]!r})" for k in FIXED_ON_RESUME
            if settings[k] != state["settings"].get(k)]
    if diff:
        raise ValueError(f"cannot resume {ckpt} with other settings: " + ", ".join(diff))
    return state, ckpt


def _refuse_occupied(out: str) -> None:
    """A new run does not write over another run's checkpoint."""
    try:
        held = find_checkpoint(out)
    except FileNotFoundError:
        return
    raise ValueError(f"{out} already holds a training run ({held}); continue it with --resume {out} "
                     f"or choose another --out")


@dataclass
class Job:
    """One training run as the loop sees it: the checked settings, the run it continues, where it writes, and
    who this process is among the workers (``world``, the one place that knows the rank)."""

    backend: str
    settings: dict
    model: object = None
    state: Optional[dict] = None     # the resumed run's state file
    ckpt: Optional[str] = None       # ... and its checkpoint folder
    data_dir: Optional[str] = None
    out: Optional[str] = None        # written by the chief only
    progress: bool = True
    on_epoch: Optional[Callable[[dict], None]] = None
    world: World = ALONE

    @property
    def writes(self) -> bool:
        return self.out is not None and self.world.chief


def resolve_workers(backend: str, workers: Optional[int], device: str) -> int:
    """How many workers a run gets: ``workers``, else the GPUs the framework sees when it trains on them (one
    worker per GPU), else 1."""
    if workers is not None:
        return check_int("workers", workers)
    impl = registry.part(backend, "training")
    gpus = impl.gpu_count() if device in ("auto", "gpu") else 0
    return gpus if gpus > 1 else 1


def run(backend: str, model=None, *, recipe: str = recipes.DEFAULT_RECIPE, variant: str = "chapter",
        epochs: Optional[int] = None, batch_size: Optional[int] = None, lr: Optional[float] = None,
        image_size: Optional[int] = None, limit_train: Optional[int] = None, limit_val: Optional[int] = None,
        device: str = "auto", precision: str = "auto", seed: int = 0, init: Optional[str] = None,
        schedule: Optional[str] = None, warmup: Optional[float] = None, data_dir: Optional[str] = None,
        out: Optional[str] = None, resume: Optional[str] = None, progress: bool = True,
        on_epoch: Optional[Callable[[dict], None]] = None, workers: Optional[int] = None,
        port: Optional[int] = None) -> List[dict]:
    """Train NiN on Fashion-MNIST with ``backend``; what every backend's ``fit`` calls.  See ``make_fit``.

    The settings left None (``epochs``, ``batch_size``, ``lr``, ``image_size``, ``init``, ``schedule``,
    ``warmup``) come from ``recipe`` (``nin_common.engine.recipes``); a value given wins over the recipe's."""
    chosen = recipes.resolve(recipe, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size, init=init,
                             schedule=schedule, warmup=warmup)
    settings = check_settings(variant=variant, limit_train=limit_train, limit_val=limit_val, device=device,
                              precision=precision, seed=seed, **chosen)
    image_size = settings["image_size"]
    settings["recipe"] = recipe
    world = registry.launching(backend).environment_world()  # the framework is not imported yet
    if world is None:  # not started by the engine's launcher: alone, or the launcher of ``workers`` processes
        n = resolve_workers(backend, workers, device)
        if port is not None:
            check_int("port", port, least=1)
        if n > 1:
            if model is not None:
                raise ValueError(f"expected model=None with workers={n}: each worker process builds its own "
                                 f"NiN (the engine keeps them equal)")
            check_world(World(size=n), settings["batch_size"], min(limit_train or 60000, 60000))
            return _launch(backend, n, dict(settings, recipe=recipe, data_dir=data_dir, out=out, resume=resume, workers=n,
                                            epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                                            init=init, schedule=schedule, warmup=warmup), progress, port)
        world = ALONE
    elif workers is not None and workers != world.size:
        raise ValueError(f"expected workers={world.size} (what the launcher started), got workers={workers}")
    mod, impl = _backend_impl(backend)
    if model is not None:
        if world.distributed:
            raise ValueError(f"expected model=None in a worker of {world.size}: each worker builds its own NiN")
        if model.image_size != image_size:
            raise ValueError(f"expected a model built for image_size {image_size} (fit's image_size), got one "
                             f"built for {model.image_size}; build it with NiN(image_size={image_size})")
        settings.update(variant=model.config.kwargs["variant"], init=model.config.init)
    state, ckpt = _resumed_state(resume, backend, settings) if resume is not None else (None, None)
    if state is not None:
        run_dir = os.path.dirname(os.path.abspath(ckpt))
        out = run_dir if out is None else out
    if not world.distributed:
        job = Job(backend, settings, model, state, ckpt, data_dir, out, progress, on_epoch, world)
        with ExitStack() as held:
            _hold_out(job, held, state is None or os.path.abspath(out or "") != run_dir)
            return _train(job, mod, impl, Alone())
    group = registry.part(backend, "distributed").join(world, settings["device"])  # the engine says who this worker is (MXNet's scheduler assigns the ranks)
    world = group.world
    job = Job(backend, settings, model, state, ckpt, data_dir, out, progress and world.chief, on_epoch, world)
    try:
        launch.register(world.rank)
        with ExitStack() as held:
            _hold_out(job, held, state is None or os.path.abspath(out or "") != run_dir)
            try:
                rows = _train(job, mod, impl, group)
                group.barrier()
            except group.errors as err:  # the engine's own error when another worker went away
                launch.lost_the_others(world.rank)
                why = re.sub(r"^\[[^\]]*\]\s*", "", first_line(err))  # less the C++ source position
                raise WorkerLost(f"worker {world.rank} of {world.size} lost the others ({why})") from None
    finally:
        group.leave()
    launch.finish(world.rank)
    return rows


def _hold_out(job: Job, held: ExitStack, new_run: bool) -> None:
    """Before any training, what can be checked about --out is checked, and --out is locked (by the writer)."""
    if not job.writes:
        return
    spec = job.model.spec if job.model is not None else build_spec(job.settings["variant"])
    check_writable_folder(job.out, checkpoint_bytes(spec, job.settings["image_size"]))
    held.enter_context(folder_lock(job.out, wait=False, busy="is another nin train running into it?"))
    if new_run:
        _refuse_occupied(job.out)
    clean_temporaries(job.out)


def _launch(backend: str, n: int, settings: dict, progress: bool, port: Optional[int]) -> List[dict]:
    """Start ``n`` workers through the backend's launcher, wait for them, and return the run's rows (read from
    its metrics; a temporary folder holds them where no ``out`` is given)."""
    import json
    import tempfile

    with ExitStack() as held:
        where = settings["out"] or settings["resume"]
        if where is None:
            where = settings["out"] = held.enter_context(tempfile.TemporaryDirectory(prefix="nin-run-"))
        argv = launch.worker_command(backend, settings, progress)
        try:
            launch.start(backend, n, argv, port)
        except launch.JobFailed as err:
            raise WorkerLost(f"{err}; {_kept_in(where)}") from None
        with open(os.path.join(where, "metrics.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]


def _kept_in(where: str) -> str:
    try:
        epoch = read_state(find_checkpoint(where))["epoch"]
    except (FileNotFoundError, ValueError):
        return "no checkpoint was written"
    return f"the last good checkpoint (epoch {epoch}) stays in {where}; continue with: nin train --resume {where}"


def _finite_figures(row: dict, saved, settings: dict) -> None:
    """End the run, as a NaN loss does, when an epoch's training or validation figure is not finite (a
    blow-up on an epoch's last step shows only in the validation); that epoch is never saved."""
    bad = [f"{name} {row[name]}" for name in ("train_loss", "train_acc", "val_loss", "val_acc")
           if not math.isfinite(row[name])]
    if bad:
        raise NonFiniteLoss(f"epoch {row['epoch']} ended with {', '.join(bad)}: training stopped. The learning "
                            f"rate is probably too high for this setting: try a lower one than --lr "
                            f"{settings['lr']:g}; {_kept(saved)}.", row["step"], row["epoch"])


def _mb(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


def _peak_since(start: Optional[float]) -> Optional[float]:
    """The resident peak since the count was restarted, never below the resident memory read at the start (the
    kernel syncs its per-thread counts lazily, so the two may differ by a few pages)."""
    peak = peak_rss_since_reset_mb()
    return None if peak is None else max(peak, start or 0.0)


def _kept(saved) -> str:
    return (f"the last good checkpoint (epoch {saved[0][0]}) stays in {saved[0][1]}" if saved[0] else
            "no checkpoint was written")


def _train(job: Job, mod, impl, group) -> List[dict]:
    """``run`` once its arguments, the run it resumes and its --out are checked (and --out is locked)."""
    backend, settings, state, ckpt, out, progress, world = (job.backend, job.settings, job.state, job.ckpt, job.out,
                                                            job.progress, job.world)
    epochs, batch_size, image_size, seed = (settings[k] for k in ("epochs", "batch_size", "image_size", "seed"))
    device, precision = settings["device"], settings["precision"]
    train = data.load("train", job.data_dir, settings["limit_train"], progress=progress)
    val = data.load("test", job.data_dir, settings["limit_val"], progress=progress)
    check_world(world, batch_size, len(train))
    model = job.model
    with group.scope():
        if model is None:
            model = impl.build_model(device, lr=settings["lr"], variant=settings["variant"], seed=seed,
                                     init=settings["init"], image_size=image_size)
        trainer = make_trainer(backend, model, settings["lr"], device, precision, group)
    rows, start_epoch, step, elapsed_before = [], 0, 0, 0.0
    if state is not None:
        mod.load_native(os.path.join(ckpt, state["native"]), model)
        try:
            trainer.load_state(ckpt)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"expected the optimizer state in {ckpt} to fit this run, got {first_line(err)}") \
                from err
        trainer.set_lr(settings["lr"])
        rows, start_epoch, step, elapsed_before = state["rows"], state["epoch"], state["step"], state["elapsed_s"]

    framework = registry.framework(backend)
    say = _say if world.chief else (lambda text: None)
    say(f"nin train: {framework} on {trainer.device_name}"
        + (f", {world.size} workers ({world.engine})" if world.distributed else "")
        + f"; {len(train):,} training and {len(val):,} validation "
        f"images ({train.source}) at {image_size}x{image_size}; recipe {settings['recipe']}: batch {batch_size}"
        + (f" ({batch_size // world.size} per worker)" if world.distributed else "") + ", SGD "
        f"{recipes.describe(settings['schedule'], settings['lr'], settings['warmup'])}, "
        f"init {settings['init']}, seed {seed}, precision {trainer.precision}"
        + (f"; resuming after epoch {start_epoch}" if state else "") + "; per epoch: loss and acc as train/val")
    if start_epoch >= epochs:
        say(f"nothing to do: the run already completed {start_epoch} of {epochs} epoch(s)")
        return rows

    saved = [(start_epoch, ckpt) if state else None]  # (epoch, folder) of the last good checkpoint

    def stop(at_step: int, loss: float, batch: int, n_batches: int) -> None:
        kept = _kept(saved)
        raise NonFiniteLoss(f"the loss became {loss} at step {at_step} (epoch {epoch}, batch {batch} of "
                            f"{n_batches}): training stopped. The learning rate is probably too high for this "
                            f"setting: try a lower one than --lr {settings['lr']:g} (e.g. "
                            f"--lr {settings['lr'] / 2:g}); {kept}.", at_step, epoch)

    # the training's own memory: the process's resident memory once data, model and trainer are ready, then its
    # peak from here on (the count restarted where the system allows); peak_rss_mb stays the whole process's
    process_peak = peak_rss_mb()
    peak_from_start = reset_peak_rss()
    rss_start = rss_mb()
    t0 = time.perf_counter()
    title = f"NiN, {framework}, {image_size}x{image_size}, lr {settings['lr']:g}, init {settings['init']}"
    for epoch in range(start_epoch + 1, epochs + 1):
        trainer.reseed(epoch_seed(seed, epoch, world.rank))
        train_loss, train_acc, train_s, step = train_epoch(trainer, train, settings, epoch, step, progress, stop,
                                                           group)
        val_loss, val_acc, _ = evaluate(trainer, val, batch_size, image_size, progress, f"epoch {epoch} val",
                                        group=group)
        row = dict(epoch=epoch, epochs=epochs, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                   val_acc=val_acc, images_per_s=len(train) / train_s, train_s=train_s,
                   elapsed_s=elapsed_before + time.perf_counter() - t0, step=step, backend=backend,
                   device=trainer.device_name, precision=trainer.precision, lr=settings["lr"], batch_size=batch_size,
                   image_size=image_size, init=settings["init"], seed=seed, n_train=len(train), n_val=len(val),
                   recipe=settings["recipe"], schedule=settings["schedule"], warmup=settings["warmup"],
                   workers=world.size, load_avg=load_average(),
                   rss_start_mb=_mb(rss_start), train_peak_rss_mb=_mb(_peak_since(rss_start) if peak_from_start
                                                                       else None),
                   peak_device_mb=trainer.peak_memory_mb())
        row["peak_rss_mb"] = round(max(process_peak, peak_rss_mb(), row["train_peak_rss_mb"] or 0), 1)
        _finite_figures(row, saved, settings)
        rows.append(row)
        say(epoch_line(row))
        if job.writes:
            write_metrics(out, rows, title)
            new_state = dict(format=STATE_FORMAT, backend=backend, epoch=epoch, step=step,
                             elapsed_s=row["elapsed_s"], settings=dict(settings, epochs=epochs, workers=world.size),
                             rows=rows, native=native_name(backend), canonical="model.npz",
                             rng="every framework is re-seeded from (seed, epoch, worker rank) at the start of "
                                 "each epoch")
            saved[0] = (epoch, save_training_checkpoint(out, mod, trainer, model, new_state))
        if job.on_epoch is not None and world.chief:
            job.on_epoch(row)
    return rows


def make_fit(backend: str) -> Callable[..., List[dict]]:
    """The ``fit`` function of a backend's ``training`` module: ``run`` with the backend filled in, and the
    same keyword arguments (its signature is ``run``'s, so it is written once)."""
    def fit(model=None, **settings) -> List[dict]:
        return run(backend, model, **settings)

    params = list(inspect.signature(run).parameters.values())[1:]  # all but ``backend``
    fit.__signature__ = inspect.Signature(params, return_annotation=List[dict])
    fit.__doc__ = f"""Train NiN on Fashion-MNIST with {registry.framework(backend)}; returns the per-epoch metrics rows.

    ``recipe`` (``nin_common.engine.recipes``) fills every setting left None: ``"chapter"`` (the default) is the
    chapter's recipe: SGD lr 0.05, batch 128, 10 epochs, 224x224 images, Xavier, cross-entropy, the 10k test
    split as validation; ``"quick"`` learns on a CPU in minutes: 67x67, ``init="kaiming-alive"``, 10 epochs,
    lr 0.05 after a half-epoch linear warm-up (``warmup=0.5``), decaying to 0 along a cosine
    (``schedule="cosine"``).  Values given explicitly win over the recipe's.  ``init="kaiming"`` (He-normal, zero
    biases) leaves the loss plateau at 2.303 that the chapter's ``"xavier"`` sits on for thousands of steps at
    67-96 px (about 200 steps at 224 px); ``"kaiming-alive"`` also starts every class
    channel alive (``nin_common.arch.weights.initial_weights``).  ``model``: train this model instead of
    a new ``NiN(variant=, seed=, init=, image_size=)``.  ``limit_train``/``limit_val``: the first N images of
    each split.  ``device``: ``"auto"`` (the GPU when the framework sees one), ``"cpu"`` or ``"gpu"``.
    ``precision``: ``"fp32"``, ``"bf16"`` (bfloat16 compute, float32 master weights) or ``"auto"`` (bf16 where
    the device computes it natively, else fp32).
    ``out``: a folder for ``metrics.jsonl``, ``curves.png`` and ``checkpoint/`` (written at each epoch end).
    ``resume``: a run folder to continue from its last completed epoch (``out`` defaults to it; epochs, lr
    and device may change, the other settings, precision too, must match).  ``on_epoch(row)`` is called after
    each epoch with its metrics row (``nin_common.tools.live.Animator`` redraws curves with it in a notebook).  A NaN
    or infinite loss raises NonFiniteLoss naming the step; so does an epoch whose training or validation figures
    are not finite (that epoch is not saved).  ``out`` is checked (a writable folder with room for the
    checkpoints) and locked before any training.
    ``workers``: train with that many data-parallel worker processes on this machine, started through the
    framework's own engine and launcher (``torchrun``, ``TF_CONFIG`` workers of MultiWorkerMirroredStrategy,
    MXNet's ``tools/launch.py`` with a ``dist_sync`` kvstore, ``jax.distributed``); the batch is the global
    one, split evenly; None: one per GPU the framework sees, else 1.  ``port``: where the workers meet
    (default: a free one).  A process started by the engine's launcher itself finds its rank in the
    launcher's variables and trains as one of the workers.  See docs/distributed.md.
    """
    return fit

