"""Train candidate models on MNIST-1D and print each one's numbers as one JSON line.

The rows of docs/results.md ("MNIST-1D") come from this script. Data:
:func:`kinn_ref.tasks.mnist1d.make_mnist1d` with the package's standard arguments (4000 training / 1000
held-out series of length 40) and ``data_seed`` (42: the package's standard split). Every model is trained
by :class:`kinn_ref.training.Trainer` (softmax cross-entropy; ``seed`` of the weights and batch order, 0
unless given) and scored by held-out accuracy after the last epoch; the best held-out accuracy over the
epochs is printed too, but a row reports the last; for grid layers, the trained edge conductances (min,
median, max over the channels of each layer).

Run it with one JSON object per setting, or a file with one per line (``#`` lines are skipped):

    python docs/examples/mnist1d_search.py '{"model": "mlp", "hidden": [100, 100], "epochs": 30}'
    python docs/examples/mnist1d_search.py settings.jsonl

Keys (defaults):

- ``model``: ``"mlp"`` or ``"kinn"`` ("kinn"); ``hidden``: widths of the hidden layers ([32, 32]; MLP
  [100, 100]), for a grid KINN channels per position; a grid KINN has one more grid layer of
  ``out_channels`` (10) channels after them and then its last grid layer of 10 channels, whose pooled
  readout the head maps to the 10 classes (grid layers ``hidden + [out_channels, 10]``);
- ``input``: how a KINN sees a series: ``"window"`` (a grid over the 40 positions, each position's
  features its ``2 radius + 1`` neighbours), ``"static"`` (the 40 values as one feature vector, held for
  ``n_steps`` steps) or ``"sequence"`` (one value per step, 40 steps) ("window"); ``radius`` (2);
- ``coupling`` ("grid" for window input, "none" otherwise), ``order`` K (1), ``integrator``
  ("expeuler"), ``boundary`` ("neumann"), ``dt`` (1.0), ``n_steps`` (4), ``readout`` ("last"),
  ``pool`` ("flatten"; grid only: "flatten" or "mean"), ``activation`` ("relu");
- ``edge_conductance``: initial grid edge conductance (1.0); ``leak_conductance``: initial ``g`` (1.0);
- ``lr`` (1e-2), ``batch`` (100), ``epochs`` (30), ``optimizer`` ("adam"), ``weight_decay`` (adamw
  only), ``schedule`` ("cosine" with 3 % warm-up, or "constant"), ``clip_norm`` (none);
- ``seed`` (0), ``data_seed`` (42), ``backend`` ("numba").
"""
import json
import sys
import time

import numpy as np

from kinn_ref.parameterization import softplus
from kinn_ref.tasks.mnist1d import STANDARD_SEED, make_mnist1d, window_features
from kinn_ref.tasks.run import first_step_seconds
from kinn_ref.training import Trainer

KEYS = {"model", "hidden", "out_channels", "input", "radius", "coupling", "order", "integrator", "boundary", "dt",
        "n_steps", "readout", "pool", "activation", "edge_conductance", "leak_conductance", "lr", "batch", "epochs",
        "optimizer", "weight_decay", "schedule", "clip_norm", "seed", "data_seed", "backend"}


def _model(s, P):
    """The model config for setting ``s`` and the map from a ``(B, P)`` series to the model's layout."""
    if s.get("model", "kinn") == "mlp":
        return {"model": "mlp", "input_dim": P, "hidden_dims": s.get("hidden", [100, 100]), "output_dim": 10,
                "activation": s.get("activation", "relu")}, (lambda x: x)
    layout = s.get("input", "window")
    options = {"order": s.get("order", 1), "integrator": s.get("integrator", "expeuler"),
               "readout": s.get("readout", "last"),
               "coupling": s.get("coupling", "grid" if layout == "window" else "none")}
    config = {"model": "kinn", "hidden_dims": s.get("hidden", [32, 32]), "dt": s.get("dt", 1.0),
              "n_steps": s.get("n_steps", 4), "head": True, "activation": s.get("activation", "relu"),
              "output_dim": 10, "options": options}
    init = {k: s[k] for k in ("edge_conductance", "leak_conductance") if k in s}
    if init:
        config["init"] = init
    if layout == "window":
        radius = s.get("radius", 2)
        options.update(grid_shape=[P], boundary=s.get("boundary", "neumann"))
        config.update(input_dim=2 * radius + 1, pool=s.get("pool", "flatten"))
        config["hidden_dims"] = list(config["hidden_dims"]) + [s.get("out_channels", 10)]
        return config, (lambda x: window_features(x, radius))
    if layout == "static":
        return dict(config, input_dim=P), (lambda x: x)
    if layout == "sequence":
        return dict(config, input_dim=1), (lambda x: x[:, :, None])
    raise ValueError(f"input must be 'window', 'static' or 'sequence', got {layout!r}")


def measure(setting):
    """Train the setting; returns a dict of its held-out accuracy and timings."""
    unknown = set(setting) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; allowed: {sorted(KEYS)}")
    s = setting
    x_train, y_train, x_test, y_test = make_mnist1d(s.get("data_seed", STANDARD_SEED))
    config, layout = _model(s, x_train.shape[1])
    config["seed"] = s.get("seed", 0)
    optimizer = s.get("optimizer", "adam")
    schedule = {"kind": "cosine", "warmup_fraction": 0.03} if s.get("schedule", "cosine") == "cosine" \
        else {"kind": s["schedule"]}
    trainer = Trainer(config, loss="cross_entropy", optimizer=optimizer, lr=s.get("lr", 1e-2),
                      optimizer_options={"weight_decay": s["weight_decay"]} if "weight_decay" in s else None,
                      batch_size=s.get("batch", 100), schedule=schedule, clip_norm=s.get("clip_norm"),
                      metrics=("accuracy",), seed=config["seed"], backend=s.get("backend", "numba"), progress=False)
    xa, xb = layout(x_train), layout(x_test)
    compile_seconds = first_step_seconds(trainer, xa)
    start = time.perf_counter()
    records = trainer.fit(xa, y_train, s.get("epochs", 30), validation=(xb, y_test))
    majority = int(np.argmax(np.bincount(y_train)))
    layers = trainer.model.layers if config["model"] == "kinn" else []
    edges = [softplus(layer.params["G_raw"]) for layer in layers
             if layer.spec.coupling == "grid" and layer.spec.param == "positive"]
    return {"setting": setting, "accuracy": records[-1]["val_accuracy"],
            "best_epoch_accuracy": max(r["val_accuracy"] for r in records),
            "train_accuracy": trainer.evaluate(xa, y_train)["accuracy"],
            "majority_class_accuracy": float(np.mean(y_test == majority)),
            "learned_edge_conductance": [[float(e.min()), float(np.median(e)), float(e.max())] for e in edges],
            "parameters": int(sum(p.size for p in trainer.model.parameters().values())),
            "compile_seconds": compile_seconds, "train_seconds": time.perf_counter() - start}


def _settings(argument):
    try:
        with open(argument, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError:
        return [json.loads(argument)]


if __name__ == "__main__":
    from kinn_ref.errors import DivergentStepError, NonFiniteTrainingError
    for one in _settings(sys.argv[1] if len(sys.argv) > 1 else "{}"):
        try:
            row = measure(one)
        except (DivergentStepError, NonFiniteTrainingError) as exc:   # a failed setting is a row too
            row = {"setting": one, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(row), flush=True)
