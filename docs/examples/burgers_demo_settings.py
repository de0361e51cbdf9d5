"""Train one candidate setting of the demo's Burgers task and print its numbers as one JSON line.

The measurements of docs/results.md ("demo settings") come from this script. Data: ``n_train + n_test``
pairs from :func:`kinn_ref.tasks.burgers.make_burgers_data` at ``P`` points (seed 0), the last ``n_test``
held out; the two no-learning baselines (conserved mean, linear heat equation) are scored on the same
held-out pairs. The model is the task's KINN (``hidden`` nodes, Kirchhoff coupling, implicit) or MLP,
trained by :class:`kinn_ref.training.Trainer` with Adam, a cosine schedule with 2 % warm-up and the
relative-L2 loss; ``"residual": true`` trains on ``u(x, 1) - mean(u(x, 0))`` and adds the mean back
before scoring.

Run it with, e.g.:

    python docs/examples/burgers_demo_settings.py '{"n_train": 800, "n_test": 100, "epochs": 200, "lr": 0.01}'

Keys (defaults): n_train (200), n_test (50), P (64), model ("kinn" or "mlp"), hidden ([P // 2]; MLP
[P, P]), dt (0.5), n_steps (4), lr (3e-3), batch (32), epochs (60), loss ("relative_l2"), residual (false),
backend ("numba").
"""
import json
import sys
import time

import numpy as np

from kinn_ref.tasks.burgers import make_burgers_data, reference_predictions
from kinn_ref.tasks.run import first_step_seconds
from kinn_ref.training import Trainer
from kinn_ref.training.losses import relative_l2

KEYS = {"n_train", "n_test", "P", "model", "hidden", "dt", "n_steps", "lr", "batch", "epochs", "loss", "residual",
        "backend"}


def measure(setting):
    """Train the setting; returns a dict of its held-out relative L2, the baselines and the timings."""
    unknown = set(setting) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(KEYS)}")
    n_train, n_test, P = setting.get("n_train", 200), setting.get("n_test", 50), setting.get("P", 64)
    start = time.perf_counter()
    data = make_burgers_data(n_train + n_test, P, seed=0)
    data_seconds = time.perf_counter() - start
    x_train, y_train = data.u0[:n_train], data.u1[:n_train]
    x_test, y_test = data.u0[n_train:], data.u1[n_train:]
    baselines = {k: relative_l2(v, y_test)[0] for k, v in reference_predictions(x_test).items()}
    if setting.get("model", "kinn") == "kinn":
        config = {"model": "kinn", "input_dim": P, "hidden_dims": setting.get("hidden", [P // 2]), "output_dim": P,
                  "dt": setting.get("dt", 0.5), "n_steps": setting.get("n_steps", 4), "head": True,
                  "options": {"coupling": "kirchhoff", "integrator": "implicit"}}
    else:
        config = {"model": "mlp", "input_dim": P, "hidden_dims": setting.get("hidden", [P, P]), "output_dim": P}
    residual = bool(setting.get("residual", False))
    if residual:
        y_train = y_train - x_train.mean(axis=1, keepdims=True)
    trainer = Trainer(config, loss=setting.get("loss", "relative_l2"), seed=0, progress=False,
                      backend=setting.get("backend", "numba"), lr=setting.get("lr", 3e-3),
                      batch_size=setting.get("batch", 32), optimizer="adam",
                      schedule={"kind": "cosine", "warmup_fraction": 0.02})
    compile_seconds = first_step_seconds(trainer, x_train)
    start = time.perf_counter()
    records = trainer.fit(x_train, y_train, setting.get("epochs", 60))
    train_seconds = time.perf_counter() - start
    pred = trainer.predict(x_test) + (x_test.mean(axis=1, keepdims=True) if residual else 0.0)
    return {"setting": setting, "relative_l2": relative_l2(pred, y_test)[0], "baseline_mean": baselines["mean"],
            "baseline_heat": baselines["heat"], "compile_seconds": compile_seconds, "train_seconds": train_seconds,
            "median_epoch_seconds": float(np.median([r["seconds"] for r in records])),
            "data_seconds": data_seconds}


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))))
