"""Train a Fourier neural operator (``neuraloperator``'s ``FNO``, PyTorch) on the Burgers task and print its
numbers as one JSON line: the peer operator beside the KINN and MLP rows of docs/results.md.

The data are those of ``kinn-ref train --task burgers --size SIZE`` (:data:`kinn_ref.tasks.registry.TASKS`,
seed 0), and the training matches the task's: the mean relative L2 error per sample as the loss, Adam, batch
32, a cosine schedule with linear warm-up over the first 2 % of the steps, the task's epochs and learning rate
for the size unless given. The FNO trains in float32 (its spectral weights are complex64); the held-out
relative L2 is computed in float64 by
:func:`kinn_ref.training.losses.relative_l2` on the held-out pairs, beside the task's no-learning baselines.
Needs the ``fno`` extra (torch and neuraloperator).

Run it with, e.g.:

    python docs/examples/burgers_fno.py '{"size": "full", "epochs": 500}'

Keys (defaults): size ("full"), modes (16), width (64), layers (4), lr and epochs (the task's for the size),
batch (32), seed (0), threads (1: torch's intra-op threads).
"""
import json
import math
import sys
import time

import numpy as np

from kinn_ref._optional import require
from kinn_ref.tasks.registry import TASKS
from kinn_ref.training.losses import relative_l2

KEYS = {"size", "modes", "width", "layers", "lr", "epochs", "batch", "seed", "threads"}


def fno_model(points, modes=16, width=64, layers=4):
    """``neuralop.models.FNO`` for one input and one output channel on a periodic 1-D grid of ``points``."""
    require("neuralop", "the Fourier-neural-operator peer")
    from neuralop.models import FNO
    return FNO(n_modes=(min(modes, points // 2),), in_channels=1, out_channels=1, hidden_channels=width,
               n_layers=layers)


def _relative_l2_torch(pred, target, eps=1e-12):
    """The loss of :func:`kinn_ref.training.losses.relative_l2`, in torch."""
    B = pred.shape[0]
    residual = (pred - target).reshape(B, -1).norm(dim=1)
    return (residual / (target.reshape(B, -1).norm(dim=1) + eps)).mean()


def _lr(step, total, warmup, lr):
    """Linear warm-up over ``warmup`` steps, then cosine decay to zero at ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def measure(setting, dataset=None):
    """Train the setting; returns a dict of its held-out relative L2, the baselines and the timings.

    ``dataset`` (a :class:`~kinn_ref.tasks.registry.Dataset`) replaces the task's data for the size.
    """
    unknown = set(setting) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(KEYS)}")
    torch = require("torch", "the Fourier-neural-operator peer")
    task, size = TASKS["burgers"], setting.get("size", "full")
    if size not in task.settings:
        raise ValueError(f"size must be one of {sorted(task.settings)}, got {size!r}")
    defaults = task.settings[size]
    epochs, lr, batch = setting.get("epochs", defaults["epochs"]), setting.get("lr", defaults["lr"]), \
        setting.get("batch", 32)
    torch.set_num_threads(int(setting.get("threads", 1)))
    data = dataset if dataset is not None else task.make_data(size, 0)
    torch.manual_seed(setting.get("seed", 0))
    model = fno_model(data.x_train.shape[1], setting.get("modes", 16), setting.get("width", 64),
                      setting.get("layers", 4))
    x = torch.from_numpy(np.asarray(data.x_train, np.float32))[:, None]
    y = torch.from_numpy(np.asarray(data.y_train, np.float32))[:, None]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(x) / batch)
    total = epochs * steps_per_epoch
    warmup = max(1, int(round(0.02 * total)))
    generator = torch.Generator().manual_seed(setting.get("seed", 0))
    step, start = 0, time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch):
            for group in optimizer.param_groups:
                group["lr"] = _lr(step, total, warmup, lr)
            idx = order[i:i + batch]
            optimizer.zero_grad()
            loss = _relative_l2_torch(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            step += 1
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        pred = model(torch.from_numpy(np.asarray(data.x_test, np.float32))[:, None])[:, 0].numpy()
    return {"setting": setting, "relative_l2": relative_l2(pred.astype(np.float64), np.asarray(data.y_test, np.float64))[0],
            "baselines": task.baseline_scores(data), "epochs": epochs, "lr": lr,
            "parameters": int(sum(p.numel() for p in model.parameters())), "n_train": len(data.x_train),
            "n_test": len(data.x_test), "train_seconds": train_seconds}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))), flush=True)
