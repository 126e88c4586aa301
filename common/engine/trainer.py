"""The Trainer every backend subclasses: the epoch loop and ``fit``, written once and framework-free.

A backend's ``nin_<b>.training.Trainer(model, lr, device="auto", precision="auto", group=None, momentum=0.0,
nesterov=False)`` subclasses ``Trainer`` and implements the framework's side only:

* ``device_name`` (a string for people), ``precision`` (the one it computes in, ``resolve_precision``'s answer)
  and ``model``, set by its constructor;
* ``train_step(images_u8, labels, image_size, global_batch=None) -> (loss_sum, correct)``: one SGD step on a
  uint8 batch (B, 28, 28) scaled to [0, 1] and resized to ``image_size`` on the device, dropout active;
* ``eval_step(images_u8, labels, image_size) -> (loss_sum, correct)``: the same without learning, dropout off;
* ``predict_step(images_u8, image_size) -> logits``: float32 (B, classes) NumPy logits, dropout off;
* ``prepare(images_u8, labels, image_size)``: only the input pipeline of a step (transfer, scaling, resizing,
  layout), waited for; what ``nin bench`` times to show the pipeline outruns the model;
* ``peak_memory_mb()``: the device's peak memory so far (None on the CPU, where the process's resident memory
  is the measure);
* ``reseed(seed)``: re-seed the framework's random state (dropout);
* ``set_lr(lr)``, ``save_state(folder)``, ``load_state(folder)``: the optimizer's learning rate and state (the
  framework's own SGD, with ``momentum`` and ``nesterov`` as given: PyTorch and optax scale the velocity by each
  step's learning rate, Keras and MXNet keep the rate inside the velocity; the same while the rate is constant);
* and, as class arguments, its backend's name and the functions a run needs (``Trainer.__init_subclass__``).

``loss_sum`` is the batch's summed cross-entropy and ``correct`` its number of right predictions, both Python
numbers: the one host-device synchronisation per step.

Reproducibility: the batch order of an epoch depends on (seed, epoch) only (``data.batches``), and every
framework's random state is re-seeded from (seed, epoch) at the start of each epoch; with the optimizer's state
saved at each epoch end, a run resumed on the CPU ends with the weights of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, ClassVar, List, Optional, Tuple

from nin_common.arch.checks import check_input_shape
from nin_common.arch.reference import cross_entropy
from nin_common.arch.variants import build_spec
from nin_common.engine import data, launch, recipes, registry
from nin_common.engine.config import RunConfig, fit_signature
from nin_common.engine.distributed import ALONE, Alone, World, WorkerLost, check_world, local_slice, worker_seed
from nin_common.engine.checkpoint import (STATE_FORMAT, checkpoint_bytes, find_checkpoint, native_name, read_state,
                                          save_training_checkpoint)
from nin_common.engine.runs import write_metrics
from nin_common.util.files import check_writable_folder, clean_temporaries, first_line, folder_lock
from nin_common.util.machine import (keep_freed_memory, load_average, peak_rss_mb, peak_rss_since_reset_mb,
                                     reset_peak_rss, rss_mb)
from nin_common.util.progress import bar as progress_bar


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or infinite; ``step`` and ``epoch`` say where."""

    def __init__(self, message: str, step: int, epoch: int):
        super().__init__(message)
        self.step, self.epoch = step, epoch


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed every framework's random state gets at the start of ``epoch`` on worker ``rank`` (a 31-bit integer;
    ``nin_common.engine.distributed.worker_seed``)."""
    return worker_seed(seed, epoch, rank)


def check_image_size(model, image_size: int) -> None:
    """``image_size`` must suit ``model`` (large enough for its poolings; its own size with a dense head)."""
    shape = (1, model.spec.in_channels, image_size, image_size)
    try:
        check_input_shape(model.spec, shape, "NCHW", model.image_size)
    except ValueError as err:
        raise ValueError(f"image size {image_size}: {err}") from err


def epoch_line(row: dict) -> str:
    """The one line printed after each epoch, under 80 columns so that it does not wrap in a narrow terminal:
    ``epoch 1/10  loss 2.3026/2.3021  acc 0.1016/0.1000  86 img/s  0:00:12`` (train/val; elapsed h:mm:ss)."""
    mins, secs = divmod(int(round(row["elapsed_s"])), 60)
    return (f"epoch {row['epoch']}/{row['epochs']}  loss {row['train_loss']:.4f}/{row['val_loss']:.4f}  "
            f"acc {row['train_acc']:.4f}/{row['val_acc']:.4f}  {row['images_per_s']:,.0f} img/s  "
            f"{mins // 60}:{mins % 60:02d}:{secs:02d}")


def _bar(total: int, desc: str, progress: bool):
    return progress_bar(progress, total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True,
                        mininterval=0.5)


def _say(text: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


@dataclass(frozen=True)
class Session:
    """What this process does of a run: its config (``out`` resolved), who it is among the workers (``world``,
    the one place that knows the rank), the run it continues, and what it shows."""

    config: RunConfig
    world: World = ALONE
    progress: bool = True
    on_epoch: Optional[Callable[[dict], None]] = None
    state: Optional[dict] = None   # the resumed run's state file
    ckpt: Optional[str] = None     # ... and its checkpoint folder

    @property
    def writes(self) -> bool:
        return self.config.out is not None and self.world.chief


class Trainer:
    """The base of every backend's Trainer: ``evaluate``, ``train_epoch``, the epoch loop and ``fit``; a backend
    implements the step hooks (the module's docstring lists them)."""

    BACKEND: ClassVar[str] = ""  # the registry name (with save_native and export_weights, what a checkpoint needs)
    model: object
    device_name: str
    precision: str
    # the backend's functions a run needs, given as class arguments: ``class Trainer(BaseTrainer, backend=...,
    # gpu_count=..., ...)``; each is called as ``Trainer.<name>(...)``
    FUNCTIONS: ClassVar[Tuple[str, ...]] = ("gpu_count", "build_model", "save_native", "load_native",
                                            "export_weights", "environment_world", "join")

    def __init_subclass__(cls, backend: Optional[str] = None, **functions):
        """A backend's Trainer names its backend and its functions: ``gpu_count()``, ``build_model(device,
        **model_kwargs)``, ``save_native(model, path)``, ``load_native(path, model)``, ``export_weights(model)``,
        ``environment_world()`` (the worker the engine's launcher made this process, or None) and ``join(world,
        device)`` (the data-parallel group); the last two are the backend's ``distributed`` module's unless
        given."""
        super().__init_subclass__()
        unknown = sorted(set(functions) - set(cls.FUNCTIONS))
        if unknown:
            raise TypeError(f"expected Trainer functions among {', '.join(cls.FUNCTIONS)}, got {', '.join(unknown)}")
        if backend is not None:
            cls.BACKEND = backend
        for name, function in functions.items():
            setattr(cls, name, staticmethod(function))

    @classmethod
    def environment_world(cls) -> Optional[World]:
        """The worker the engine's launcher made this process, or None: the backend's ``distributed`` module says
        (imported when asked, so that importing a backend does not import its ``python -m`` launcher module)."""
        return registry.launching(cls.BACKEND).environment_world()

    @classmethod
    def join(cls, world: World, device: str):
        """This worker in the data-parallel group (the backend's ``distributed.join``)."""
        return registry.launching(cls.BACKEND).join(world, device)

    # ---------------------------------------------------------------- the backend's hooks

    def train_step(self, images_u8, labels, image_size: int, global_batch: Optional[int] = None) -> Tuple[float, int]:
        raise NotImplementedError

    def eval_step(self, images_u8, labels, image_size: int) -> Tuple[float, int]:
        raise NotImplementedError

    def predict_step(self, images_u8, image_size: int):
        raise NotImplementedError

    def prepare(self, images_u8, labels, image_size: int) -> None:
        raise NotImplementedError

    def peak_memory_mb(self) -> Optional[float]:
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        raise NotImplementedError

    def set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def save_state(self, folder) -> None:
        raise NotImplementedError

    def load_state(self, folder) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- passes over the data

    def evaluate(self, split: data.Split, batch_size: int, image_size: int, progress: bool = True,
                 desc: str = "eval", predictions: Optional[list] = None, group=None) -> Tuple[float, float, float]:
        """(mean loss, accuracy, seconds) of the model over ``split``, dropout off.

        ``predictions``, if given, receives every image's predicted class in order (the pass then runs
        ``predict_step`` and computes the loss from its logits, in float64).  ``group``: the workers of a
        data-parallel run; each evaluates its own contiguous shard and the sums are reduced by the engine, so
        every image is counted once.
        """
        if group is not None and group.world.distributed:
            if predictions is not None:
                raise ValueError("expected predictions from one process, got a data-parallel group")
            part = local_slice(len(split), group.world)
            shard = data.Split(split.name, split.images[part], split.labels[part], split.source)
            loss, acc, seconds = Trainer.evaluate(self, shard, batch_size, image_size, progress, desc)
            total_loss, total_correct, n = group.all_sum([loss * len(shard), acc * len(shard), len(shard)])
            return float(total_loss / n), float(round(total_correct) / n), seconds
        check_image_size(self.model, image_size)
        start, loss, correct = time.perf_counter(), 0.0, 0
        with _bar(len(split), desc, progress) as bar:
            for images, labels in data.batches(split, batch_size):
                if predictions is None:
                    batch_loss, batch_correct = self.eval_step(images, labels, image_size)
                else:
                    logits = self.predict_step(images, image_size)
                    predicted = logits.argmax(axis=1)
                    predictions.extend(predicted.tolist())
                    batch_loss = cross_entropy(logits, labels) * len(labels)
                    batch_correct = int((predicted == labels).sum())
                loss, correct = loss + batch_loss, correct + batch_correct
                bar.update(len(labels))
        return loss / len(split), correct / len(split), time.perf_counter() - start

    def train_epoch(self, split: data.Split, config: RunConfig, epoch: int, step: int, progress: bool,
                    on_bad_loss: Callable[[int, float, int, int], None], group=None) -> Tuple[float, float, float, int]:
        """One pass of SGD over ``split``: (mean loss, accuracy, seconds, last global step).

        With a data-parallel ``group``, each global batch of the single-process order is cut into the workers'
        contiguous slices (``distributed.local_slice``); each worker steps on its slice, the engine combines the
        gradients, and the step's loss and correct count are summed over the workers, so every worker sees the
        figures of the whole batch (and a non-finite loss anywhere stops all of them at the same step)."""
        group = group or Alone()
        world = group.world
        size, bs = config.image_size, config.batch_size
        n_batches = data.num_batches(len(split), bs)
        total, warm = n_batches * config.epochs, recipes.warmup_steps(config.warmup, n_batches)
        lr = None
        start, loss, correct, seen = time.perf_counter(), 0.0, 0, 0
        with _bar(len(split), f"epoch {epoch}/{config.epochs}", progress) as bar:
            for i, (images, labels) in enumerate(data.batches(split, bs, shuffle=True, seed=config.seed,
                                                              epoch=epoch), 1):
                step_lr = recipes.lr_at(config.schedule, config.lr, step, total, warm)
                if step_lr != lr:
                    self.set_lr(step_lr)
                    lr = step_lr
                step += 1
                if world.distributed:
                    part = local_slice(len(labels), world)
                    batch_loss, batch_correct = self.train_step(images[part], labels[part], size,
                                                                global_batch=len(labels))
                    batch_loss, batch_correct = group.all_sum([batch_loss, batch_correct])
                    batch_loss, batch_correct = float(batch_loss), int(round(batch_correct))
                else:
                    batch_loss, batch_correct = self.train_step(images, labels, size)
                if not math.isfinite(batch_loss):
                    on_bad_loss(step, batch_loss / len(labels), i, n_batches)
                loss, correct, seen = loss + batch_loss, correct + batch_correct, seen + len(labels)
                bar.update(len(labels))
                bar.set_postfix(loss=f"{loss / seen:.4f}", acc=f"{correct / seen:.3f}", refresh=False)
        return loss / seen, correct / seen, time.perf_counter() - start, step

    # ---------------------------------------------------------------- fit

    @classmethod
    def create(cls, model, lr: float, device: str = "auto", precision: str = "auto", group=None, *,
               momentum: float = 0.0, nesterov: bool = False) -> "Trainer":
        """The Trainer for a run (training, evaluation, a benchmark).  Where a run starts, the process-wide memory
        setting is made (``keep_freed_memory``: once per process, see nin_common.util.machine).  ``group``: the
        data-parallel workers it trains with (the Trainer then steps through the engine).  ``momentum`` and
        ``nesterov``: the SGD's (plain SGD by default, the chapter's)."""
        keep_freed_memory()
        sgd = dict(momentum=momentum, nesterov=nesterov)
        if group is not None and group.world.distributed:
            return cls(model, lr, device, precision, group=group, **sgd)
        return cls(model, lr, device, precision, **sgd)

    @classmethod
    def fit(cls, model=None, *, progress: bool = True, on_epoch=None, **options) -> List[dict]:
        """Train NiN on Fashion-MNIST in this backend; returns the per-epoch metrics rows.

        The keyword arguments are ``RunConfig``'s fields (``nin_common.engine.config``), checked, with the
        settings left None filled from ``recipe``; docs/training.md describes each.  ``model``: train this model
        instead of a new ``NiN(variant=, seed=, init=, image_size=)``.  ``on_epoch(row)`` is called after each
        epoch with its metrics row; ``progress``: show progress bars.  A NaN or infinite loss raises
        ``NonFiniteLoss`` naming the step; so does an epoch whose training or validation figures are not finite
        (that epoch is not saved).
        """
        return cls.run(RunConfig(**options), model, progress, on_epoch)

    @classmethod
    def run(cls, config: RunConfig, model=None, progress: bool = True, on_epoch=None) -> List[dict]:
        """``fit`` with its settings as one ``RunConfig``: alone, as the launcher of ``config.workers`` worker
        processes, or as one of them (started by the engine's launcher: the process finds its rank in the
        launcher's variables)."""
        world = cls.environment_world()
        if world is None:  # not started by the engine's launcher: alone, or the launcher of several workers
            rows = launch_workers(cls.BACKEND, config, model, progress, cls.gpu_count)
            if rows is not None:
                return rows
            world = ALONE
        elif config.workers is not None and config.workers != world.size:
            raise ValueError(f"expected workers={world.size} (what the launcher started), got workers={config.workers}")
        if model is not None:
            if world.distributed:
                raise ValueError(f"expected model=None in a worker of {world.size}: each worker builds its own NiN")
            if model.image_size != config.image_size:
                raise ValueError(f"expected a model built for image_size {config.image_size} (fit's image_size), "
                                 f"got one built for {model.image_size}; build it with "
                                 f"NiN(image_size={config.image_size})")
            config = config.replace(variant=model.config.kwargs["variant"], init=model.config.init)
        session = _resumed(cls.BACKEND, config, world, progress, on_epoch)
        if not world.distributed:
            with ExitStack() as held:
                _hold_out(session, model, held)
                return cls._run_session(session, model, Alone())
        group = cls.join(world, config.device)  # the engine says who this worker is (MXNet's scheduler assigns ranks)
        world = group.world
        session = dataclasses.replace(session, world=world, progress=progress and world.chief)
        try:
            launch.register(world.rank)
            with ExitStack() as held:
                _hold_out(session, model, held)
                try:
                    rows = cls._run_session(session, model, group)
                    group.barrier()
                except group.errors as err:  # the engine's own error when another worker went away
                    launch.lost_the_others(world.rank)
                    why = re.sub(r"^\[[^\]]*\]\s*", "", first_line(err))  # less the C++ source position
                    raise WorkerLost(f"worker {world.rank} of {world.size} lost the others ({why})") from None
        finally:
            group.leave()
        launch.finish(world.rank)
        return rows

    @classmethod
    def _run_session(cls, session: Session, model, group) -> List[dict]:
        """``run`` once its config, the run it resumes and its --out are checked (and --out is locked)."""
        config = session.config
        train = data.load("train", config.data_dir, config.limit_train, progress=session.progress)
        val = data.load("test", config.data_dir, config.limit_val, progress=session.progress)
        check_world(session.world, config.batch_size, len(train))
        with group.scope():
            if model is None:
                model = cls.build_model(config.device, lr=config.lr, variant=config.variant, seed=config.seed,
                                        init=config.init, image_size=config.image_size)
            trainer = cls.create(model, config.lr, config.device, config.precision, group,
                                 momentum=config.momentum, nesterov=config.nesterov)
        return trainer._epochs(session, train, val, group)

    def _restore_run(self, session: Session) -> Tuple[List[dict], int, int, float]:
        """(rows, epoch, step, elapsed seconds) the run starts from: the resumed run's, loaded, or a new run's."""
        state, ckpt = session.state, session.ckpt
        if state is None:
            return [], 0, 0, 0.0
        self.load_native(os.path.join(ckpt, state["native"]), self.model)
        try:
            self.load_state(ckpt)
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"expected the optimizer state in {ckpt} to fit this run, got {first_line(err)}") \
                from err
        self.set_lr(session.config.lr)
        return state["rows"], state["epoch"], state["step"], state["elapsed_s"]

    def _first_line(self, session: Session, train: data.Split, val: data.Split, start_epoch: int) -> str:
        config, world = session.config, session.world
        size, batch = config.image_size, config.batch_size
        return (f"nin train: {registry.framework(self.BACKEND)} on {self.device_name}"
                + (f", {world.size} workers ({world.engine})" if world.distributed else "")
                + f"; {len(train):,} training and {len(val):,} validation "
                f"images ({train.source}) at {size}x{size}; recipe {config.recipe}: batch {batch}"
                + (f" ({batch // world.size} per worker)" if world.distributed else "") + ", SGD "
                f"{recipes.describe(config.schedule, config.lr, config.warmup, config.momentum, config.nesterov)}, "
                f"init {config.init}, seed {config.seed}, precision {self.precision}"
                + (f"; resuming after epoch {start_epoch}" if session.state else "")
                + "; per epoch: loss and acc as train/val")

    def _epochs(self, session: Session, train: data.Split, val: data.Split, group) -> List[dict]:
        """The epoch loop: train, validate, print, write the metrics and the checkpoint, call ``on_epoch``."""
        config, world, progress = session.config, session.world, session.progress
        rows, start_epoch, step, elapsed_before = self._restore_run(session)
        say = _say if world.chief else (lambda text: None)
        say(self._first_line(session, train, val, start_epoch))
        if start_epoch >= config.epochs:
            say(f"nothing to do: the run already completed {start_epoch} of {config.epochs} epoch(s)")
            return rows

        saved = [(start_epoch, session.ckpt) if session.state else None]  # (epoch, folder) of the last good one
        epoch = start_epoch

        def stop(at_step: int, loss: float, batch: int, n_batches: int) -> None:
            raise NonFiniteLoss(f"the loss became {loss} at step {at_step} (epoch {epoch}, batch {batch} of "
                                f"{n_batches}): training stopped. The learning rate is probably too high for this "
                                f"setting: try a lower one than --lr {config.lr:g} (e.g. "
                                f"--lr {config.lr / 2:g}); {_kept(saved)}.", at_step, epoch)

        memory = _Memory()
        t0 = time.perf_counter()
        title = (f"NiN, {registry.framework(self.BACKEND)}, {config.image_size}x{config.image_size}, "
                 f"lr {config.lr:g}, init {config.init}")
        for epoch in range(start_epoch + 1, config.epochs + 1):
            self.reseed(epoch_seed(config.seed, epoch, world.rank))
            train_loss, train_acc, train_s, step = self.train_epoch(train, config, epoch, step, progress, stop, group)
            val_loss, val_acc, _ = self.evaluate(val, config.batch_size, config.image_size, progress,
                                                 f"epoch {epoch} val", group=group)
            row = dict(epoch=epoch, epochs=config.epochs, train_loss=train_loss, train_acc=train_acc,
                       val_loss=val_loss, val_acc=val_acc, images_per_s=len(train) / train_s, train_s=train_s,
                       elapsed_s=elapsed_before + time.perf_counter() - t0, step=step, backend=self.BACKEND,
                       device=self.device_name, precision=self.precision, lr=config.lr,
                       batch_size=config.batch_size, image_size=config.image_size, init=config.init,
                       seed=config.seed, n_train=len(train), n_val=len(val), recipe=config.recipe,
                       schedule=config.schedule, warmup=config.warmup, momentum=config.momentum,
                       nesterov=config.nesterov, workers=world.size, load_avg=load_average(),
                       **memory.figures(), peak_device_mb=self.peak_memory_mb())
            row["peak_rss_mb"] = round(max(memory.process_peak, peak_rss_mb(), row["train_peak_rss_mb"] or 0), 1)
            _finite_figures(row, saved, config)
            rows.append(row)
            say(epoch_line(row))
            if session.writes:
                write_metrics(config.out, rows, title)
                saved[0] = (epoch, self._save_epoch(session, rows, row))
            if session.on_epoch is not None and world.chief:
                session.on_epoch(row)
        return rows

    def _save_epoch(self, session: Session, rows: List[dict], row: dict) -> str:
        """The checkpoint of the epoch ``row`` ends; returns its folder."""
        state = dict(format=STATE_FORMAT, backend=self.BACKEND, epoch=row["epoch"], step=row["step"],
                     elapsed_s=row["elapsed_s"], settings=dict(session.config.to_dict(), workers=session.world.size),
                     rows=rows, native=native_name(self.BACKEND), canonical="model.npz",
                     rng="every framework is re-seeded from (seed, epoch, worker rank) at the start of each epoch")
        return save_training_checkpoint(session.config.out, type(self), self, self.model, state)


# fit's keyword arguments are RunConfig's fields: its signature says so (inspect, help(), completion)
Trainer.fit.__func__.__signature__ = fit_signature((inspect.Parameter("cls", inspect.Parameter.POSITIONAL_OR_KEYWORD),))


class _Memory:
    """The training's own memory: the process's resident memory once data, model and trainer are ready, then its
    peak from here on (the count restarted where the system allows); ``process_peak`` stays the whole
    process's."""

    def __init__(self):
        self.process_peak = peak_rss_mb()
        self.from_start = reset_peak_rss()
        self.rss_start = rss_mb()

    def figures(self) -> dict:
        peak = _peak_since(self.rss_start) if self.from_start else None
        return dict(rss_start_mb=_mb(self.rss_start), train_peak_rss_mb=_mb(peak))


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


def _finite_figures(row: dict, saved, config: RunConfig) -> None:
    """End the run, as a NaN loss does, when an epoch's training or validation figure is not finite (a
    blow-up on an epoch's last step shows only in the validation); that epoch is never saved."""
    bad = [f"{name} {row[name]}" for name in ("train_loss", "train_acc", "val_loss", "val_acc")
           if not math.isfinite(row[name])]
    if bad:
        raise NonFiniteLoss(f"epoch {row['epoch']} ended with {', '.join(bad)}: training stopped. The learning "
                            f"rate is probably too high for this setting: try a lower one than --lr "
                            f"{config.lr:g}; {_kept(saved)}.", row["step"], row["epoch"])


# ---------------------------------------------------------------- before the first epoch

def _resumed(backend: str, config: RunConfig, world: World, progress: bool, on_epoch) -> Session:
    """The session of this process: with ``config.resume``, the state of the run to resume and its checkpoint
    folder, checked against the config (whose ``out`` defaults to the run's folder)."""
    if config.resume is None:
        return Session(config, world, progress, on_epoch)
    ckpt = find_checkpoint(config.resume)
    state = read_state(ckpt)
    if state["backend"] != backend:
        raise ValueError(f"expected a {backend} run to resume, {ckpt} holds a {state['backend']} run")
    diff = config.resume_conflicts(state["settings"])
    if diff:
        raise ValueError(f"cannot resume {ckpt} with other settings: " + ", ".join(diff))
    if config.out is None:
        config = config.replace(out=os.path.dirname(os.path.abspath(ckpt)))
    return Session(config, world, progress, on_epoch, state, ckpt)


def _refuse_occupied(out: str) -> None:
    """A new run does not write over another run's checkpoint."""
    try:
        held = find_checkpoint(out)
    except FileNotFoundError:
        return
    raise ValueError(f"{out} already holds a training run ({held}); continue it with --resume {out} "
                     f"or choose another --out")


def _hold_out(session: Session, model, held: ExitStack) -> None:
    """Before any training, what can be checked about --out is checked, and --out is locked (by the writer)."""
    if not session.writes:
        return
    out = session.config.out
    spec = model.spec if model is not None else build_spec(session.config.variant)
    check_writable_folder(out, checkpoint_bytes(spec, session.config.image_size))
    held.enter_context(folder_lock(out, wait=False, busy="is another nin train running into it?"))
    run_dir = os.path.dirname(os.path.abspath(session.ckpt)) if session.ckpt else None
    if session.state is None or os.path.abspath(out) != run_dir:
        _refuse_occupied(out)
    clean_temporaries(out)


# ---------------------------------------------------------------- several workers

def resolve_workers(workers: Optional[int], device: str, gpu_count: Callable[[], int]) -> int:
    """How many workers a run gets: ``workers``, else the GPUs the framework sees (``gpu_count()``) when it
    trains on them (one worker per GPU), else 1."""
    if workers is not None:
        return workers
    gpus = gpu_count() if device in ("auto", "gpu") else 0
    return gpus if gpus > 1 else 1


def launch_workers(backend: str, config: RunConfig, model, progress: bool,
                   gpu_count: Callable[[], int]) -> Optional[List[dict]]:
    """Where the run gets several workers (``resolve_workers``), start them through the backend's launcher, wait
    for them, and return the run's rows; None where it gets one (this process trains alone).  Framework-free
    where ``config.workers`` is given."""
    n = resolve_workers(config.workers, config.device, gpu_count)
    if n <= 1:
        return None
    if model is not None:
        raise ValueError(f"expected model=None with workers={n}: each worker process builds its own NiN (the "
                         f"engine keeps them equal)")
    check_world(World(size=n), config.batch_size, min(config.limit_train or 60000, 60000))
    with ExitStack() as held:
        where = config.out or config.resume
        if where is None:  # the rows come back through the metrics: a temporary folder holds them
            where = held.enter_context(tempfile.TemporaryDirectory(prefix="nin-run-"))
            config = config.replace(out=where)
        argv = launch.worker_command(backend, config.replace(workers=n), progress)
        try:
            launch.start(backend, n, argv, config.port)
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
