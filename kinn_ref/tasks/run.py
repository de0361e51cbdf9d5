"""Train one model on one task and record the result (used by ``kinn-ref train`` and ``kinn-ref demo``)."""
import json
import time
from pathlib import Path

import numpy as np

from ..training.atomic import atomic_write_text
from ..training.trainer import Trainer
from .registry import get_task

#: The file of a run's result, beside the trainer's checkpoint and metrics in ``out_dir``.
RESULT_NAME = "result.json"


def first_step_seconds(trainer, x_train):
    """Time one forward and backward pass of ``trainer``'s model on its first training batch.

    A fresh model's first pass is where the numba backend compiles its kernels (or loads them from its
    on-disk cache) and the cuda backend compiles and uploads; this measures that, plus the one pass.
    Only caches inside the layers are written (the last input, the tape, the gradients): the parameters,
    the optimizer and the batch order are untouched, so training afterwards is the same, bitwise.

    Parameters
    ----------
    trainer : Trainer
    x_train : ndarray
        Training inputs in the model's layout; the first ``trainer.batch_size`` rows are used.

    Returns
    -------
    float
        Wall-clock seconds.
    """
    xb = trainer._cast(np.asarray(x_train)[:trainer.batch_size])
    start = time.perf_counter()
    trainer.first_pass(xb)
    return time.perf_counter() - start


def _prepare(task_name, model_name, size, seed, backend, out_dir, dataset, progress, overrides,
             trainer_class=Trainer, data_seed=None):
    """Data, settings and a fresh :class:`Trainer` as :func:`train_task` uses them."""
    task = get_task(task_name)
    data = dataset if dataset is not None else task.make_data(size, task.seed_of_data(seed, data_seed))
    config, train, test = task.model(model_name, data)
    config = dict(config, seed=seed)
    settings = dict(task.settings[size])
    settings.update({k: v for k, v in overrides.items() if v is not None})
    epochs = settings.pop("epochs")
    trainer = trainer_class(config, loss=task.loss, metrics=(task.metric,), seed=seed, backend=backend,
                            out_dir=out_dir, progress=progress, **settings)
    return task, data, epochs, trainer, train, test


def warm_up(task_name, model_name, *, backend="numpy"):
    """The first forward and backward pass :func:`train_task` would make for this model (a fresh model
    with the ``"small"`` settings, on the task's smallest data) and nothing else: compiles, and caches on
    disk, what training the model on ``backend`` needs.

    Returns
    -------
    float
        Seconds of the pass (:func:`first_step_seconds`).
    """
    task = get_task(task_name)
    try:
        data = task.make_data("smoke", 0)
    except (ValueError, KeyError):          # a task without a smoke size
        data = task.make_data("small", 0)
    _, _, _, trainer, (x_train, _), _ = _prepare(task_name, model_name, "small", 0, backend, None, data, False, {})
    return first_step_seconds(trainer, x_train)


def train_task(task_name, model_name, *, size="small", seed=0, data_seed=None, backend="numpy", out_dir=None,
               dataset=None, resume=False, progress=True, warmup=True, trainer_class=Trainer, **overrides):
    """Train ``model_name`` on ``task_name`` with the task's settings (``overrides`` replace them).

    Parameters
    ----------
    task_name, model_name : str
    size : {"small", "full"}
    seed : int
        Seed of the model's initial weights and of the batch order, and of the data unless the task has
        standard data (:attr:`Task.data_seed`) or ``data_seed`` is given.
    data_seed : int, optional
        Seed of the data (another draw of it than the task's standard one).
    backend : str
    out_dir : str or Path, optional
        Gets ``checkpoint.npz``, ``metrics.jsonl`` and ``result.json``.
    dataset : Dataset, optional
        Reuse data already made for this task and size.
    resume : bool or str
        Continue from ``out_dir/checkpoint.npz`` (True) or the given checkpoint.
    progress : bool
    warmup : bool
        Before training, time one forward and backward pass of the fresh model on one batch
        (:func:`first_step_seconds`), so that ``train_seconds`` excludes the compilation it triggers.
    trainer_class : callable
        Builds the trainer with :class:`Trainer`'s arguments (the data-parallel trainer of
        :mod:`kinn_ref.scaleout.data_parallel`, bound to its communicator).
    **overrides
        ``epochs``, ``lr``, ``batch_size``, ``optimizer``, ``schedule``, ``penalty``, ``clip_norm``, ``guard``.

    Returns
    -------
    result : dict
        Task, model, backend, held-out metric, epochs, parameter count, the task's no-learning
        ``baselines`` (same metric, same held-out set), ``compile_seconds`` (the warm-up pass of
        :func:`first_step_seconds`; None without ``warmup``) and ``train_seconds`` (``Trainer.fit``
        afterwards: every epoch with its held-out evaluation).
    records : list of dict
        The epoch records.
    trainer : Trainer
    """
    task, data, epochs, trainer, (x_train, y_train), (x_test, y_test) = _prepare(
        task_name, model_name, size, seed, backend, out_dir, dataset, progress, overrides, trainer_class, data_seed)
    compile_seconds = first_step_seconds(trainer, x_train) if warmup else None
    start = time.perf_counter()
    records = trainer.fit(x_train, y_train, epochs, validation=(x_test, y_test), resume=resume or None)
    seconds = time.perf_counter() - start
    result = {"task": task_name, "model": model_name, "size": size, "backend": trainer.backend,
              "metric": task.metric, "value": records[-1][f"val_{task.metric}"], "epochs": epochs,
              "compile_seconds": compile_seconds, "train_seconds": seconds,
              "parameters": int(sum(p.size for p in trainer.model.parameters().values())),
              "n_train": int(len(x_train)), "n_test": int(len(x_test)), "seed": seed,
              "data_seed": None if dataset is not None else task.seed_of_data(seed, data_seed), "data": data.info,
              "baselines": task.baseline_scores(data)}
    if out_dir is not None and trainer.out_dir is not None:     # (a data-parallel run's rank 0 alone writes)
        atomic_write_text(Path(out_dir) / RESULT_NAME, json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result, records, trainer


def load_trained(task_name, model_name, out_dir, *, size="small", seed=0, data_seed=None, backend="numpy",
                 dataset=None, **overrides):
    """A finished run of :func:`train_task` read back from its folder ``out_dir``: what ``train_task``
    returned when it trained it (used by ``kinn-ref demo`` for a run trained in a second process).

    Parameters
    ----------
    task_name, model_name, size, seed, data_seed, backend, dataset, **overrides
        As given to :func:`train_task` for the run.
    out_dir : str or Path
        The run's folder (``checkpoint.npz``, ``metrics.jsonl``, ``result.json``).

    Returns
    -------
    result : dict
    records : list of dict
    trainer : Trainer
        With the trained parameters (writing nothing).

    Raises
    ------
    ValueError
        When the folder holds no finished run of this model (result, checkpoint and records disagree).
    CheckpointError
        When the checkpoint is of another model.
    """
    from ..training.metrics_log import read_metrics
    from ..training.trainer import CHECKPOINT_NAME, METRICS_NAME
    out_dir = Path(out_dir)
    try:
        result = json.loads((out_dir / RESULT_NAME).read_text(encoding="utf-8"))
        records = read_metrics(out_dir / METRICS_NAME)
    except (OSError, ValueError) as exc:
        raise ValueError(f"out_dir {out_dir} holds no finished run: {exc}") from None
    trainer = _prepare(task_name, model_name, size, seed, backend, None, dataset, False, overrides,
                       data_seed=data_seed)[3]
    trainer.load(out_dir / CHECKPOINT_NAME)
    if (result.get("task"), result.get("model"), result.get("epochs")) != (task_name, model_name, trainer.epoch) \
            or [r.get("epoch") for r in records] != list(range(1, trainer.epoch + 1)):
        raise ValueError(f"out_dir {out_dir} holds no finished run of {task_name}/{model_name}: its result, "
                         f"checkpoint (epoch {trainer.epoch}) and metrics ({len(records)} records) disagree")
    return result, records, trainer
