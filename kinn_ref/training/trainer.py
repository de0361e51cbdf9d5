"""The mini-batch trainer: seeded, reproducible, checkpointed, exactly resumable.

One optimizer step: forward a mini-batch, loss and its gradient, backward, add the conductance penalty's
gradient, clip the global norm, take the learning rate from the schedule, update the parameters in
place, then let the stability guard lower any layer's ``dt`` that left the stable region.

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

from .._checks import check_positive_int
from ..backends import resolve
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
        Clip the global gradient norm to this value.
    penalty : float
        Weight of the conductance penalty (0: off).
    guard : bool or StabilityGuard
        Keep each KINN layer's ``dt`` stable (``True``: default guard).
    metrics : sequence of str
        Held-out metrics to log (``"accuracy"``, ``"relative_l2"``, ``"mse"``).
    seed : int
        Seed of the batch order.
    backend : str
        ``"numpy"``, ``"numba"``, ``"cuda"`` or ``"auto"`` (resolved once, here).
    out_dir : str or Path, optional
        Where ``checkpoint.npz`` and ``metrics.jsonl`` go; nothing is written when omitted.
    checkpoint_every : int
        Write the checkpoint every this many epochs (and after the last).
    progress : bool
        Show a tqdm progress bar, labelled with the ``out_dir`` folder's name.
    """

    def __init__(self, config, *, loss="mse", optimizer="adam", lr=1e-3, optimizer_options=None, schedule=None,
                 batch_size=32, clip_norm=None, penalty=0.0, guard=False, metrics=(), seed=0, backend="numpy",
                 out_dir=None, checkpoint_every=1, progress=True):
        self.backend = resolve(backend)
        self.config = json.loads(json.dumps(config))
        self.model = build_model(self.config, backend=self.backend)
        self.loss_name, self.loss_fn = loss, get_loss(loss)
        self.metrics = tuple(metrics)
        unknown = set(self.metrics) - set(METRICS)
        if unknown:
            raise ValueError(f"metrics must be among {sorted(METRICS)}, got {sorted(unknown)}")
        self.optimizer = make_optimizer(optimizer, self.model.parameters(), lr=lr, **(optimizer_options or {}))
        self.schedule_config = dict(schedule or {"kind": "constant"})
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.clip_norm = clip_norm
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty!r}")
        self.penalty = float(penalty)
        self.guard = StabilityGuard() if guard is True else (guard or None)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        self.progress = progress
        self.epoch = 0
        self.extended_from = None
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
        cfg = dict(self.schedule_config)
        cfg.setdefault("lr", self.optimizer.lr)
        if cfg["kind"] == "cosine":
            cfg.setdefault("total_steps", epochs * steps_per_epoch)
            if "warmup_fraction" in cfg:
                cfg["warmup_steps"] = int(cfg.pop("warmup_fraction") * cfg["total_steps"])
        return make_schedule(cfg)

    def train_step(self, xb, yb, lr):
        """One optimizer step on a mini-batch; returns ``(loss, penalty, grad_norm, dt_changes)``."""
        pred = self.model.forward(xb)
        loss, d_pred = self.loss_fn(pred, yb)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became non-finite at optimizer step {self.optimizer.step_count}; "
                                     "lower the learning rate, clip gradients or enable the stability guard")
        self.model.backward(d_pred)
        grads = self.model.gradients()
        pen = 0.0
        if self.penalty:
            pen, pen_grads = conductance_penalty(self.model, self.penalty)
            for k, g in pen_grads.items():
                if k in grads:
                    grads[k] = grads[k] + g
        norm = clip_by_global_norm(grads, self.clip_norm) if self.clip_norm else global_norm(grads)
        self.optimizer.step(grads, lr)
        changes = self.guard.apply(self.model) if self.guard is not None else []
        return loss, pen, norm, changes

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
        """Write a checkpoint of the current state to ``path``; returns its digest."""
        return save_checkpoint(path, params=self.model.parameters(), optimizer_state=self.optimizer.state_dict(),
                               config=self.config, epoch=self.epoch, rng_state=self.rng.bit_generator.state,
                               layer_dt=self.layer_dt(), extra={"run": run_config, "backend": self.backend})

    def load(self, path, run_config=None, steps_per_epoch=None):
        """Restore the state saved in ``path``; with ``run_config``, also require the same run settings.

        A run saved with another total of epochs but otherwise the same settings (``steps_per_epoch``
        given) is accepted: it is being extended (or cut short), and :attr:`extended_from` holds the
        saved total.

        Raises
        ------
        CheckpointError
            When the file is corrupt or its model config, parameters or run settings differ.
        """
        ckpt = load_checkpoint(path)
        if ckpt.config != self.config:
            diff = sorted(k for k in set(ckpt.config) | set(self.config) if ckpt.config.get(k) != self.config.get(k))
            raise CheckpointError(f"checkpoint {path} is for another model: config entries {diff} differ "
                                  f"(checkpoint {[ckpt.config.get(k) for k in diff]}, "
                                  f"this run {[self.config.get(k) for k in diff]})")
        saved_run = ckpt.meta["extra"].get("run")
        other_settings = run_config is not None and saved_run != run_config
        self.extended_from = self._other_total(saved_run, run_config, steps_per_epoch) if other_settings else None
        if other_settings and self.extended_from is None:
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
        try:
            self.optimizer.load_state_dict(ckpt.optimizer)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
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
        """
        epochs = check_positive_int("epochs", epochs)
        x, y = self._cast(x), self._cast(y)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"x and y must hold the same number (> 0) of samples, got {len(x)} and {len(y)}")
        n = len(x)
        steps_per_epoch = -(-n // self.batch_size)
        run_config = self.run_config(epochs, steps_per_epoch, data_fingerprint(x, y))
        schedule = self._schedule(epochs, steps_per_epoch)
        if resume is not None and resume is not False:
            if resume is True:
                if self.out_dir is None:
                    raise ValueError("resume=True needs out_dir (the checkpoint is out_dir/checkpoint.npz)")
                resume = self.out_dir / CHECKPOINT_NAME
            self.load(resume, run_config, steps_per_epoch)
            if self.epoch > epochs:
                raise ValueError(f"epochs must be >= {self.epoch}: the checkpoint {resume} is at epoch {self.epoch} "
                                 f"(got epochs={epochs}); pass a larger total to extend the run")
            if self.extended_from is not None:
                logger.info("the run saved in %s for %d epochs now runs to %d", resume, self.extended_from,
                            epochs)
            elif self.epoch == epochs:
                warnings.warn(f"the run in {resume} has finished its {epochs} epochs; nothing to train (pass a "
                              "larger epochs to extend it)", stacklevel=2)
            logger.info("resumed from %s at epoch %d", resume, self.epoch)
            self.log.truncate(self.epoch)
        elif self.out_dir is not None:
            self.log.truncate(0)
        if validation is not None:
            validation = (self._cast(validation[0]), self._cast(validation[1]))
        bar = self._progress_bar((epochs - self.epoch) * steps_per_epoch)
        try:
            while self.epoch < epochs:
                record = self._epoch(x, y, schedule, steps_per_epoch, validation, bar)
                if self.out_dir is not None and (self.epoch % self.checkpoint_every == 0 or self.epoch == epochs):
                    self.save(self.out_dir / CHECKPOINT_NAME, run_config)
                self.log.append(record)
                if callback is not None:
                    callback(self, record)
        finally:
            if bar is not None:
                bar.close()
        return self.log.records

    def _progress_bar(self, total):
        if not self.progress:
            return None
        from tqdm.auto import tqdm
        label = self.out_dir.name if self.out_dir is not None else "training"
        return tqdm(total=total, desc=label, unit="step", leave=False, dynamic_ncols=True, mininterval=0.5)

    def _epoch(self, x, y, schedule, steps_per_epoch, validation, bar):
        start = time.perf_counter()
        order = self.rng.permutation(len(x))
        total = pen_total = norm_total = 0.0
        dt_changes = 0
        for i in range(steps_per_epoch):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            lr = schedule(self.optimizer.step_count)
            loss, pen, norm, changes = self.train_step(x[idx], y[idx], lr)
            total += loss * len(idx)
            pen_total += pen * len(idx)
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
