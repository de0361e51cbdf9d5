"""The mini-batch trainer: seeded, reproducible, checkpointed, exactly resumable.

One optimizer step: forward a mini-batch, loss and its gradient, backward, add the conductance penalty's
gradient, check every gradient is finite, clip the global norm, take the learning rate from the schedule,
update the parameters in place, check them finite, then let the stability guard lower any layer's ``dt``
that left the stable region (the guard also runs once before the first step).

Nothing non-finite goes on silently: a NaN or infinite loss, gradient, parameter or optimizer state stops
the run with an error naming it and the epoch and step, before the update or the save that would use it.

Crash consistency: each epoch's record is appended to ``metrics.jsonl`` before that epoch's checkpoint is
written (both atomically), so after a kill at any point the log holds every epoch up to the checkpoint's
(perhaps more); resuming truncates the log to the checkpoint's epoch, and the dropped epochs are trained
again, bitwise as before. Temporary files of writes a kill interrupted are removed when the next run
starts.

Reproducibility: the model is built from its config (its seed included), batches are drawn from
``numpy.random.default_rng(seed)``, and nothing else is random, so the same seed on the same backend gives
identical weights. A checkpoint stores the parameters, the optimizer state, the RNG state, the epoch and
the per-layer ``dt``; resuming from it continues the run as if it had never stopped (bitwise).
"""
import hashlib
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np

from .._checks import check_positive_float, check_positive_int, check_real
from ..backends import resolve
from ..errors import NonFiniteTrainingError, UnstableStepError
from .atomic import remove_stale_temporaries
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .clipping import clip_by_global_norm, global_norm
from .losses import METRICS, get_loss
from .metrics_log import MetricsLog
from .models import build_model
from .optimizers import make_optimizer
from .regularization import conductance_penalty, kinn_layers
from .schedules import make_schedule
from .stability import StabilityGuard

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.jsonl"


def data_fingerprint(*arrays):
    """Short SHA-256 of the arrays' dtypes, shapes and bytes (a resumed run must see the same data)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class Trainer:
    """Train a model built from ``config`` on arrays ``(x, y)``.

    Parameters
    ----------
    config : dict
        Model config for :func:`~kinn_ref.training.models.build_model`.
    loss : {"mse", "relative_l2", "cross_entropy"}
    optimizer : {"sgd", "adam", "adamw"}
    lr : float
        Base learning rate.
    optimizer_options : dict, optional
        Further optimizer keyword arguments (``momentum``, ``betas``, ``weight_decay``, ...).
    schedule : dict, optional
        ``{"kind": "constant" | "step" | "cosine", ...}`` (see :mod:`~kinn_ref.training.schedules`); ``lr``
        defaults to the base rate and the cosine ``total_steps`` to the whole run; a cosine
        ``warmup_fraction`` sets ``warmup_steps`` to that share of it. Constant when omitted.
    batch_size : int
    clip_norm : float, optional
        Clip the global gradient norm to this value (finite, > 0).
    penalty : float
        Weight of the conductance penalty (finite, >= 0; 0: off).
    guard : bool or StabilityGuard
        Keep each KINN layer's ``dt`` stable (``True``: default guard), checked before the first step and
        after every step. A circuit unstable for every ``dt`` stops training with
        :class:`~kinn_ref.errors.UnstableStepError` unless the guard is ``StabilityGuard(on_unstable="warn")``.
    metrics : sequence of str
        Held-out metrics to log (``"accuracy"``, ``"relative_l2"``, ``"mse"``).
    seed : int
        Seed of the batch order.
    backend : str
        ``"numpy"``, ``"numba"``, ``"cuda"`` or ``"auto"`` (resolved once, here).
    out_dir : str or Path, optional
        Where ``checkpoint.npz`` and ``metrics.jsonl`` go; nothing is written when omitted. A fresh
        :meth:`fit` (not resuming, trainer at epoch 0) starts the folder's run anew: an earlier checkpoint
        there is removed and the metrics file restarted.
    checkpoint_every : int
        Write the checkpoint every this many epochs (and after the last).
    progress : bool
        Show a tqdm progress bar, labelled with the ``out_dir`` folder's name.

    Raises
    ------
    ValueError
        Naming the argument, when a setting is of the wrong kind, non-finite or out of its range.
    """

    def __init__(self, config, *, loss="mse", optimizer="adam", lr=1e-3, optimizer_options=None, schedule=None,
                 batch_size=32, clip_norm=None, penalty=0.0, guard=False, metrics=(), seed=0, backend="numpy",
                 out_dir=None, checkpoint_every=1, progress=True):
        self.backend = resolve(backend)
        self.config = json.loads(json.dumps(config))
        self.model = build_model(self.config, backend=self.backend)
        self.loss_name, self.loss_fn = loss, get_loss(loss)
        if isinstance(metrics, str):
            raise ValueError(f"metrics must be a sequence of names, got the string {metrics!r}")
        self.metrics = tuple(metrics)
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"metrics must be among {sorted(METRICS)}, got {sorted(unknown)}")
        if optimizer_options is not None and not isinstance(optimizer_options, dict):
            raise ValueError(f"optimizer_options must be a dict of keyword arguments, got {optimizer_options!r}")
        try:
            self.optimizer = make_optimizer(optimizer, self.model.parameters(), lr=lr, **(optimizer_options or {}))
        except TypeError as exc:  # an option the optimizer does not take
            raise ValueError(f"optimizer_options {sorted(optimizer_options or {})} for {optimizer!r}: {exc}") \
                from None
        if schedule is not None and not isinstance(schedule, dict):
            raise ValueError(f"schedule must be a dict {{'kind': ..., **arguments}}, got {schedule!r}")
        self.schedule_config = {"kind": "constant"} if schedule is None else dict(schedule)   # {} has no kind
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.clip_norm = None if clip_norm is None else check_positive_float("clip_norm", clip_norm)
        self.penalty = check_real("penalty", penalty, 0.0)
        if guard is True:
            guard = StabilityGuard()
        elif guard is False or guard is None:
            guard = None
        elif not isinstance(guard, StabilityGuard):
            raise ValueError(f"guard must be True, False or a StabilityGuard, got {guard!r}")
        self.guard = guard
        self.seed = check_positive_int("seed", seed, minimum=0)
        self._schedule(None, 1)  # the schedule's arguments are checked here, its total when fit plans it
        self.rng = np.random.default_rng(self.seed)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        self.progress = progress
        self.epoch = 0
        self.extended_from = None
        self._total_epochs = None  # the total of the last fit, which a later fit continues
        self.log = MetricsLog(None if self.out_dir is None else self.out_dir / METRICS_NAME)

    # ------------------------------------------------------------------ data and evaluation
    def _cast(self, a):
        a = np.asarray(a)
        dtype = next(iter(self.model.parameters().values())).dtype
        return a.astype(dtype, copy=False) if np.issubdtype(a.dtype, np.floating) else a

    def predict(self, x, batch_size=256):
        """Model output for ``x``, computed in batches."""
        x = self._cast(x)
        return np.concatenate([self.model.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def evaluate(self, x, y, batch_size=256):
        """``{"loss": ..., <metric>: ...}`` on ``(x, y)``."""
        pred = self.predict(x, batch_size)
        out = {"loss": self.loss_fn(pred, self._cast(y))[0]}
        out.update({m: METRICS[m](pred, self._cast(y)) for m in self.metrics})
        return out

    # ------------------------------------------------------------------ one step
    def _schedule(self, epochs, steps_per_epoch):
        """The schedule of a run of ``epochs`` (None: a run long enough for any warm-up, to check arguments)."""
        cfg = dict(self.schedule_config)
        cfg.setdefault("lr", self.optimizer.lr)
        if cfg.get("kind") == "cosine":
            if epochs is None and "total_steps" not in cfg:
                cfg["total_steps"] = 2 + (cfg.get("warmup_steps") if isinstance(cfg.get("warmup_steps"), int)
                                          else 0)
            cfg.setdefault("total_steps", None if epochs is None else epochs * steps_per_epoch)
            if "warmup_fraction" in cfg:
                fraction = check_real("schedule['warmup_fraction']", cfg.pop("warmup_fraction"), 0.0, 1.0,
                                      high_open=True)
                if "warmup_steps" in cfg:
                    raise ValueError("schedule takes warmup_fraction or warmup_steps, not both")
                total = check_positive_int("schedule['total_steps']", cfg["total_steps"])
                cfg["warmup_steps"] = int(fraction * total)
        return make_schedule(cfg)

    def train_step(self, xb, yb, lr):
        """One optimizer step on a mini-batch; returns ``(loss, penalty, grad_norm, dt_changes)``.

        Raises
        ------
        NonFiniteTrainingError
            When the loss, a gradient (checked before the update) or a parameter (after it) is not finite.
        UnstableStepError
            When the guard finds a circuit unstable for every ``dt`` (``on_unstable="raise"``).
        """
        epoch, step = self.epoch + 1, self.optimizer.step_count + 1
        hint = "; lower the learning rate, clip gradients or enable the stability guard"
        loss, grads = self._batch_gradients(xb, yb, epoch, step, hint)
        pen = 0.0
        if self.penalty:
            pen, pen_grads = conductance_penalty(self.model, self.penalty)
            for k, g in pen_grads.items():
                if k in grads:
                    grads[k] = grads[k] + g
        self._check_finite(grads, "gradient of", epoch, step, "the update was not applied" + hint)
        norm = clip_by_global_norm(grads, self.clip_norm) if self.clip_norm else global_norm(grads)
        if not np.isfinite(norm):
            raise NonFiniteTrainingError(f"the global gradient norm overflowed at epoch {epoch}, optimizer step "
                                         f"{step}; the update was not applied{hint}", "global gradient norm",
                                         epoch, step)
        self.optimizer.step(grads, lr)
        self._check_finite(self.model.parameters(), "parameter", epoch, step,
                           f"it became so in this update (learning rate {lr:g}); nothing of epoch {epoch} is "
                           "saved" + hint)
        changes = self._apply_guard(epoch, step) if self.guard is not None else []
        return loss, pen, norm, changes

    def _batch_gradients(self, xb, yb, epoch, step, hint):
        """Loss of the mini-batch and the gradients of every parameter (the data-parallel trainer of
        :mod:`kinn_ref.scaleout.data_parallel` computes them on its rank's shard and all-reduces them)."""
        pred = self.model.forward(xb)
        loss, d_pred = self.loss_fn(pred, yb)
        if not np.isfinite(loss):
            raise NonFiniteTrainingError(f"the loss became non-finite ({loss}) at epoch {epoch}, optimizer step "
                                         f"{step}{hint}", "loss", epoch, step)
        self.model.backward(d_pred)
        return loss, self.model.gradients()

    def _batch(self, x, y, order, start, stop):
        """The mini-batch of rows ``order[start:stop]`` that :meth:`train_step` takes (the device trainer of
        :mod:`kinn_ref.scaleout.device_training` gathers it on the GPU)."""
        idx = order[start:stop]
        return x[idx], y[idx]

    def first_pass(self, xb):
        """One forward and backward pass of the model on ``xb``, changing nothing that training reads (the
        warm-up of :func:`kinn_ref.tasks.run.first_step_seconds`)."""
        pred = self.model.forward(xb)
        self.model.backward(np.ones_like(pred))

    @staticmethod
    def _check_finite(arrays, what, epoch, step, consequence):
        for name, a in arrays.items():
            if not np.all(np.isfinite(a)):
                bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
                at = f"epoch {epoch}" + ("" if step is None else f", optimizer step {step}")
                raise NonFiniteTrainingError(f"{what} {name!r} holds {bad} non-finite value(s) at {at}; "
                                             f"{consequence}", f"{what} {name!r}", epoch, step)

    def _apply_guard(self, epoch, step):
        """The guard on the current model; its refusal names the epoch and step."""
        try:
            return self.guard.apply(self.model)
        except UnstableStepError as exc:
            at = f"before the first step of epoch {epoch}" if step is None else \
                f"after optimizer step {step} (epoch {epoch})"
            raise UnstableStepError(f"{exc} [{at}]", exc.dt, exc.dt_max, exc.integrator) from None

    # ------------------------------------------------------------------ checkpoints
    def run_config(self, epochs, steps_per_epoch, fingerprint):
        """Everything that must agree for a resumed run to continue this one exactly."""
        return json.loads(json.dumps({"epochs": epochs, "loss": self.loss_name, "optimizer": self.optimizer.kind,
                "optimizer_hyperparameters": self.optimizer.hyperparameters(),
                "schedule": self._schedule(epochs, steps_per_epoch).config(), "batch_size": self.batch_size,
                "clip_norm": self.clip_norm, "penalty": self.penalty, "seed": self.seed,
                "guard": None if self.guard is None else self.guard.config(), "data": fingerprint}))

    def layer_dt(self):
        return {prefix: layer.spec.dt for prefix, layer in kinn_layers(self.model)}

    def save(self, path, run_config=None):
        """Write a checkpoint of the current state to ``path``; returns its digest.

        Raises
        ------
        NonFiniteTrainingError
            When a parameter or an optimizer state slot is not finite; nothing is written.
        """
        state = self.optimizer.state_dict()
        consequence = f"the checkpoint {path} is not written"
        self._check_finite(self.model.parameters(), "parameter", self.epoch, None, consequence)
        for slot, values in state["slots"].items():
            self._check_finite(values, f"optimizer state {slot!r} of", self.epoch, None, consequence)
        return save_checkpoint(path, params=self.model.parameters(), optimizer_state=state,
                               config=self.config, epoch=self.epoch, rng_state=self.rng.bit_generator.state,
                               layer_dt=self.layer_dt(), extra={"run": run_config, "backend": self.backend,
                                                                **self._checkpoint_extra()})

    def _checkpoint_extra(self):
        """Further entries of a checkpoint's ``extra`` (the data-parallel trainer records its rank count)."""
        return {}

    def load(self, path, run_config=None, steps_per_epoch=None):
        """Restore the state saved in ``path``; with ``run_config``, also require the same run settings.

        A run saved with another total of epochs but otherwise the same settings (``steps_per_epoch``
        given) is accepted: it is being extended (or cut short), and :attr:`extended_from` holds the
        saved total. The trainer is changed only when every check passes.

        Raises
        ------
        CheckpointError
            When the file is corrupt or its model config, parameters or run settings differ.
        ValueError
            When ``run_config`` asks for fewer epochs in total than the checkpoint has completed.
        """
        ckpt = load_checkpoint(path)
        if run_config is not None and ckpt.epoch > run_config["epochs"]:
            raise ValueError(f"epochs must be >= {ckpt.epoch}: the checkpoint {path} is at epoch {ckpt.epoch} "
                             f"(got epochs={run_config['epochs']}); pass a larger total to extend the run")
        if ckpt.config != self.config:
            diff = sorted(k for k in set(ckpt.config) | set(self.config) if ckpt.config.get(k) != self.config.get(k))
            raise CheckpointError(f"checkpoint {path} is for another model: config entries {diff} differ "
                                  f"(checkpoint {[ckpt.config.get(k) for k in diff]}, "
                                  f"this run {[self.config.get(k) for k in diff]})")
        saved_run = ckpt.meta["extra"].get("run")
        other_settings = run_config is not None and saved_run != run_config
        extended_from = self._other_total(saved_run, run_config, steps_per_epoch) if other_settings else None
        if other_settings and extended_from is None:
            diff = sorted(k for k in set(saved_run or {}) | set(run_config)
                          if (saved_run or {}).get(k) != run_config.get(k))
            raise CheckpointError(f"checkpoint {path} was written by a run with other settings: {diff} differ; "
                                  "resume with the settings of the original run")
        params = self.model.parameters()
        if set(ckpt.params) != set(params):
            raise CheckpointError(f"checkpoint {path} holds parameters {sorted(ckpt.params)}, the model has "
                                  f"{sorted(params)}")
        for k, p in params.items():
            if ckpt.params[k].shape != p.shape or ckpt.params[k].dtype != p.dtype:
                raise CheckpointError(f"checkpoint parameter {k!r} is {ckpt.params[k].dtype}{ckpt.params[k].shape}, "
                                      f"the model's is {p.dtype}{p.shape}")
        for k, p in params.items():
            if not np.all(np.isfinite(ckpt.params[k])):
                raise CheckpointError(f"checkpoint {path}: parameter {k!r} holds non-finite values")
        try:
            self.optimizer.load_state_dict(ckpt.optimizer)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
        self.extended_from = extended_from
        for k, p in params.items():
            p[...] = ckpt.params[k]
        for prefix, layer in kinn_layers(self.model):
            if prefix in ckpt.meta["layer_dt"]:
                layer.spec = layer.spec.replace(dt=ckpt.meta["layer_dt"][prefix])
        self.rng.bit_generator.state = ckpt.meta["rng_state"]
        self.epoch = ckpt.epoch
        if ckpt.meta["extra"].get("backend") != self.backend:
            warnings.warn(f"checkpoint {path} was written on backend {ckpt.meta['extra'].get('backend')!r}, "
                          f"resuming on {self.backend!r}: the continuation is not bitwise the same as on the "
                          "original backend", stacklevel=3)
        return ckpt

    def _other_total(self, saved_run, run_config, steps_per_epoch):
        """The saved run's total of epochs when it differs from ``run_config`` in that total alone, else None."""
        if not isinstance(saved_run, dict) or steps_per_epoch is None:
            return None
        saved_epochs = saved_run.get("epochs")
        if saved_epochs is None:  # runs saved before the total was recorded: read it from a cosine plan
            total = (saved_run.get("schedule") or {}).get("total_steps")
            saved_epochs = total // steps_per_epoch if isinstance(total, int) and total % steps_per_epoch == 0 \
                else None
        if not isinstance(saved_epochs, int) or saved_epochs < 1 or saved_epochs == run_config["epochs"]:
            return None
        planned = self.run_config(saved_epochs, steps_per_epoch, run_config["data"])
        if "epochs" not in saved_run:
            planned.pop("epochs")
        return saved_epochs if planned == saved_run else None

    def __repr__(self):
        where = "" if self.out_dir is None else f", out_dir='{self.out_dir}'"
        return (f"Trainer({self.model!r}, loss={self.loss_name!r}, optimizer={self.optimizer.kind!r}, "
                f"lr={self.optimizer.lr:g}, batch_size={self.batch_size}, backend={self.backend!r}, "
                f"epoch={self.epoch}{where})")

    # ------------------------------------------------------------------ the loop
    def fit(self, x, y, epochs, validation=None, resume=None, callback=None):
        """Train for ``epochs`` epochs in total (a resumed run continues up to that total).

        Resuming with the total the run was saved with continues it exactly (bitwise). Resuming with a
        larger total extends a run: the learning-rate schedule is planned anew over the new total from the
        saved step on, so an extended run is not bitwise one planned for the new total from the start.
        A smaller total that is still at least the checkpoint's epoch shortens the run (with a
        ``UserWarning`` saying so); a total below the checkpoint's epoch is refused. Calling ``fit`` again on
        a trainer that has trained continues it in the same way, up to the new total.

        The stability guard (when on) checks every layer before the first step, so a ``dt`` unstable from
        the start is lowered before any forward pass, in float32 as in float64.

        Parameters
        ----------
        x, y : ndarray
            Training inputs and targets (first axis: samples).
        epochs : int
        validation : tuple of ndarray, optional
            ``(x_val, y_val)`` evaluated after every epoch.
        resume : str or Path or True, optional
            Checkpoint to continue from (``True``: ``out_dir/checkpoint.npz``).
        callback : callable, optional
            ``callback(trainer, record)`` after every epoch (after its checkpoint is written).

        Returns
        -------
        list of dict
            The epoch records (also in ``out_dir/metrics.jsonl``).

        Raises
        ------
        ValueError
            When ``epochs`` is below the epoch the checkpoint (or this trainer) has reached.
        CheckpointError
            When the checkpoint to resume from is missing, corrupt, or of another model or run.
        NonFiniteTrainingError
            When a loss, gradient, parameter or optimizer state becomes non-finite (nothing of it is saved).
        UnstableStepError
            When the stability guard finds a circuit unstable for every ``dt`` (``on_unstable="raise"``).
        """
        epochs = check_positive_int("epochs", epochs)
        x, y = self._cast(x), self._cast(y)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"x and y must hold the same number (> 0) of samples, got {len(x)} and {len(y)}")
        n = len(x)
        steps_per_epoch = -(-n // self.batch_size)
        run_config = self.run_config(epochs, steps_per_epoch, data_fingerprint(x, y))
        schedule = self._schedule(epochs, steps_per_epoch)
        if self.out_dir is not None:
            removed = [p for name in (CHECKPOINT_NAME, METRICS_NAME)
                       for p in remove_stale_temporaries(self.out_dir / name)]
            if removed:
                logger.info("removed %d temporary file(s) left in %s by an interrupted write", len(removed),
                            self.out_dir)
        if resume is not None and resume is not False:
            if resume is True:
                if self.out_dir is None:
                    raise ValueError("resume=True needs out_dir (the checkpoint is out_dir/checkpoint.npz)")
                resume = self.out_dir / CHECKPOINT_NAME
            self.load(resume, run_config, steps_per_epoch)
            self._announce_total(resume, epochs)
            logger.info("resumed from %s at epoch %d", resume, self.epoch)
            self._restore_log()
        elif self.epoch > 0:
            if self.epoch > epochs:
                raise ValueError(f"epochs must be >= {self.epoch}: this trainer has trained {self.epoch} epochs "
                                 f"(got epochs={epochs}); pass a larger total to continue it")
            self.extended_from = self._total_epochs if self._total_epochs != epochs else None
            self._announce_total("this trainer", epochs)
            self._restore_log()
        elif self.out_dir is not None:
            (self.out_dir / CHECKPOINT_NAME).unlink(missing_ok=True)
            self.log.truncate(0)
        self._total_epochs = epochs
        if validation is not None:
            validation = (self._cast(validation[0]), self._cast(validation[1]))
        self._check_finite(self.model.parameters(), "parameter", self.epoch + 1, None,
                           "the model cannot be trained from it")
        pending = self._apply_guard(self.epoch + 1, None) if self.guard is not None and self.epoch < epochs else []
        bar = self._progress_bar((epochs - self.epoch) * steps_per_epoch)
        try:
            while self.epoch < epochs:
                record = self._epoch(x, y, schedule, steps_per_epoch, validation, bar, len(pending))
                pending = []
                # the record goes first: after a kill between the two writes, the log is ahead of the
                # checkpoint, and resuming truncates it to the checkpoint's epoch
                self.log.append(record)
                if self.out_dir is not None and (self.epoch % self.checkpoint_every == 0 or self.epoch == epochs):
                    self.save(self.out_dir / CHECKPOINT_NAME, run_config)
                if callback is not None:
                    callback(self, record)
        finally:
            if bar is not None:
                bar.close()
        return self.log.records

    def _announce_total(self, where, epochs):
        """Say how a continued run relates to its saved total: shortened (a warning), finished or extended."""
        if self.extended_from is not None and epochs < self.extended_from:
            warnings.warn(f"shortened the run in {where} from {self.extended_from} to {epochs} epochs (the "
                          "learning-rate schedule was planned anew over the new total)", UserWarning, stacklevel=3)
        elif self.extended_from is not None:
            logger.info("the run in %s for %d epochs now runs to %d", where, self.extended_from, epochs)
        elif self.epoch == epochs:
            warnings.warn(f"the run in {where} has finished its {epochs} epochs; nothing to train (pass a "
                          "larger epochs to extend it)", stacklevel=3)

    def _restore_log(self):
        """Truncate the metrics to the epoch reached; warn when epochs before it have no record."""
        self.log.truncate(self.epoch)
        missing = sorted(set(range(1, self.epoch + 1)) - {r.get("epoch") for r in self.log.records})
        if missing and self.log.path is not None:
            warnings.warn(f"{self.log.path} holds no record of epoch(s) {missing} (up to the checkpoint's "
                          f"epoch {self.epoch}); those epochs stay missing from the log", UserWarning, stacklevel=3)

    def _progress_bar(self, total):
        if not self.progress:
            return None
        from tqdm.auto import tqdm
        label = self.out_dir.name if self.out_dir is not None else "training"
        return tqdm(total=total, desc=label, unit="step", leave=False, dynamic_ncols=True, mininterval=0.5)

    def _epoch(self, x, y, schedule, steps_per_epoch, validation, bar, dt_changes=0):
        """Train one epoch; ``dt_changes`` counts the guard's changes made before its first step."""
        start = time.perf_counter()
        order = self.rng.permutation(len(x))
        total = pen_total = norm_total = 0.0
        for i in range(steps_per_epoch):
            start, stop = i * self.batch_size, min((i + 1) * self.batch_size, len(x))
            lr = schedule(self.optimizer.step_count)
            loss, pen, norm, changes = self.train_step(*self._batch(x, y, order, start, stop), lr)
            total += loss * (stop - start)
            pen_total += pen * (stop - start)
            norm_total += norm
            dt_changes += len(changes)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss:.3g}", refresh=False)
        self.epoch += 1
        record = {"epoch": self.epoch, "step": self.optimizer.step_count, "lr": lr, "train_loss": total / len(x),
                  "grad_norm": norm_total / steps_per_epoch, "seconds": time.perf_counter() - start}
        if self.penalty:
            record["penalty"] = pen_total / len(x)
        if self.guard is not None:
            record["dt_changes"] = dt_changes
        if validation is not None:
            record.update({f"val_{k}": v for k, v in self.evaluate(*validation).items()})
        logger.info("epoch %d: %s", self.epoch, {k: v for k, v in record.items() if k != "epoch"})
        return record
