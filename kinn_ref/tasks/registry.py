"""Training tasks by name: data, model configs and training settings for ``kinn-ref train`` and the demo.

Each task builds its data for a size (``"small"``: seconds, for tests and the demo; ``"full"``: the
numbers of docs/results.md; Burgers also has ``"smoke"``, a few pairs for ``kinn-ref demo --quick``, whose
training uses the ``"small"`` settings) and prepares it for a model (grid-coupled models take per-point
features).
"""
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_choice
from .mnist1d import STANDARD_SEED as _MNIST1D_SEED


@dataclass
class Dataset:
    """Training and held-out arrays plus what the task wants to record about them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)


@dataclass
class Task:
    """A named task.

    Attributes
    ----------
    name, description : str
    loss : str
        Training loss (``"mse"``, ``"relative_l2"``, ``"cross_entropy"``).
    metric : str
        Held-out metric reported (``"accuracy"`` or ``"relative_l2"``).
    make_data : callable
        ``make_data(size, seed) -> Dataset``.
    data_seed : int, optional
        The seed of the task's standard data (MNIST-1D: the package's split); None: the data is drawn
        with the run's seed.
    models : dict of str -> callable
        ``models[name](dataset) -> (config, prepare)``: the model config and a function mapping an
        ``(x, y)`` pair of the dataset to the model's layout.
    settings : dict of str -> dict
        Training settings per size (``epochs``, ``lr``, ``batch_size``, ``optimizer``, ``schedule``).
    baselines : callable, optional
        ``baselines(dataset) -> dict of str -> float``: predictors that learn nothing, named in words, scored
        with the task's ``metric`` on the held-out set (what a trained model has to beat).
    """

    name: str
    description: str
    loss: str
    metric: str
    make_data: object
    models: dict
    settings: dict
    baselines: object = None
    data_seed: int = None

    def baseline_scores(self, dataset):
        """The task's no-learning baselines on ``dataset``'s held-out set (``{}`` when it has none).

        Parameters
        ----------
        dataset : Dataset

        Returns
        -------
        dict of str -> float
            Description of each predictor -> its held-out ``metric``, computed from the arrays.
        """
        return {} if self.baselines is None else {k: float(v) for k, v in self.baselines(dataset).items()}

    def seed_of_data(self, seed, data_seed=None):
        """The seed the data is drawn with: ``data_seed`` when given, else the task's standard one, else the
        run's ``seed``."""
        if data_seed is not None:
            return data_seed
        return seed if self.data_seed is None else self.data_seed

    def model(self, name, dataset):
        """``(config, (x_train, y_train), (x_test, y_test))`` for model ``name``."""
        check_choice("model", name, tuple(self.models))
        config, prepare = self.models[name](dataset)
        return config, prepare(dataset.x_train, dataset.y_train), prepare(dataset.x_test, dataset.y_test)


def _identity(x, y):
    return x, y


# --------------------------------------------------------------------------- Burgers
def _burgers_data(size, seed):
    from .burgers import make_burgers_data
    # small: the demo's size, chosen in docs/results.md ("demo settings") so that a KINN beats both
    # no-learning baselines within about 15 s of training on two cores
    sizes = {"smoke": (48, 16, 64), "small": (800, 100, 64), "full": (2000, 200, 256)}
    n_train, n_test, resolution = sizes[check_choice("size", size, tuple(sizes))]
    data = make_burgers_data(n_train + n_test, resolution, seed=seed)
    return Dataset(data.u0[:n_train], data.u1[:n_train], data.u0[n_train:], data.u1[n_train:],
                   info={"resolution": resolution, "nu": data.nu, "t_end": data.t_end, "length": data.length})


_BURGERS_BASELINES = {"mean": "no learning: conserved mean of u(x,0)",
                      "heat": "no learning: linear heat eq. u_t = nu u_xx"}


def _burgers_baselines(ds):
    """Relative L2 of :func:`~kinn_ref.tasks.burgers.reference_predictions` on the held-out pairs."""
    from ..training.losses import relative_l2
    from .burgers import reference_predictions
    info = ds.info
    refs = reference_predictions(ds.x_test, info.get("t_end", 1.0), info.get("nu", 0.1), info.get("length", 1.0))
    return {label: relative_l2(refs[key], ds.y_test)[0] for key, label in _BURGERS_BASELINES.items()}


def _burgers_kinn(ds):
    P = ds.x_train.shape[1]
    return ({"model": "kinn", "input_dim": P, "hidden_dims": [P // 2], "output_dim": P, "dt": 0.5, "n_steps": 4,
             "head": True, "options": {"coupling": "kirchhoff", "integrator": "implicit"}}, _identity)


def _burgers_kinn_grid(ds):
    from .burgers import stencil_features
    P = ds.x_train.shape[1]
    return ({"model": "kinn", "input_dim": 5, "hidden_dims": [32, 32], "output_dim": 1, "dt": 1.0, "n_steps": 4,
             "head": True, "options": {"coupling": "grid", "grid_shape": [P], "integrator": "implicit"}},
            lambda x, y: (stencil_features(x, 2), y[..., None]))


def _burgers_mlp(ds):
    P = ds.x_train.shape[1]
    return {"model": "mlp", "input_dim": P, "hidden_dims": [P, P], "output_dim": P}, _identity


# --------------------------------------------------------------------------- digits
def _digits_data(size, seed):
    from .digits import load_digits_split
    x_train, y_train, x_test, y_test = load_digits_split(0.2, seed)
    if size == "small":
        x_train, y_train = x_train[:400], y_train[:400]
    return Dataset(x_train, y_train, x_test, y_test, info={"classes": 10, "features": 64})


def _majority_baseline(ds):
    """Held-out accuracy of always answering the most frequent class of the training labels."""
    labels = np.asarray(ds.y_train).astype(np.int64)
    majority = int(np.argmax(np.bincount(labels)))
    return {f"no learning: majority class ({majority}), chance": float(np.mean(np.asarray(ds.y_test) == majority))}


def _digits_kinn(ds):
    return ({"model": "kinn", "input_dim": 64, "hidden_dims": [128], "output_dim": 10, "dt": 0.5, "n_steps": 4,
             "head": True, "options": {"coupling": "none"}}, _identity)


def _digits_mlp(ds):
    return {"model": "mlp", "input_dim": 64, "hidden_dims": [128], "output_dim": 10}, _identity


# --------------------------------------------------------------------------- MNIST-1D
def _mnist1d_data(size, seed):
    from .mnist1d import PUBLISHED_ACCURACY, make_mnist1d
    x_train, y_train, x_test, y_test = make_mnist1d(seed)
    if check_choice("size", size, ("small", "full")) == "small":
        x_train, y_train = x_train[:1000], y_train[:1000]
    return Dataset(x_train, y_train, x_test, y_test,
                   info={"classes": 10, "length": x_train.shape[1], "data_seed": seed,
                         "published_accuracy": PUBLISHED_ACCURACY})


#: Half-width of the window of neighbouring values each position of the grid-coupled KINN reads.
MNIST1D_RADIUS = 2


def _mnist1d_grid(hidden, pool):
    """A grid-coupled KINN over the 40 positions: grid layers ``hidden + [10]``, window inputs, edge
    conductances starting at 0.1, the last layer's readout pooled into the head (docs/results.md)."""
    def build(ds):
        from .mnist1d import window_features
        P = ds.x_train.shape[1]
        return ({"model": "kinn", "input_dim": 2 * MNIST1D_RADIUS + 1, "hidden_dims": hidden, "output_dim": 10,
                 "dt": 1.0, "n_steps": 4, "head": True, "pool": pool, "init": {"edge_conductance": 0.1},
                 "options": {"coupling": "grid", "grid_shape": [P], "boundary": "neumann"}},
                lambda x, y: (window_features(x, MNIST1D_RADIUS), y))
    return build


def _mnist1d_kinn_static(ds):
    return ({"model": "kinn", "input_dim": ds.x_train.shape[1], "hidden_dims": [100], "output_dim": 10,
             "dt": 0.5, "n_steps": 4, "head": True, "options": {"coupling": "none"}}, _identity)


def _mnist1d_kinn_sequence(ds):
    return ({"model": "kinn", "input_dim": 1, "hidden_dims": [64], "output_dim": 10, "dt": 0.5, "n_steps": 4,
             "head": True, "options": {"order": 2, "coupling": "dense"}}, lambda x, y: (x[:, :, None], y))


def _mnist1d_mlp(ds):
    return {"model": "mlp", "input_dim": ds.x_train.shape[1], "hidden_dims": [100, 100], "output_dim": 10}, _identity


# --------------------------------------------------------------------------- damped oscillator
def _oscillator_data(size, seed):
    from .oscillator import make_oscillator_data
    n_train, n_test = {"small": (100, 50), "full": (200, 100)}[size]
    data = make_oscillator_data(n_train + n_test, n_steps=100, dt=0.1, seed=seed)
    return Dataset(data.u[:n_train], data.y[:n_train], data.u[n_train:], data.y[n_train:],
                   info={"dt": data.dt, "omega": data.omega, "zeta": data.zeta})


def _oscillator_baselines(ds):
    """Relative L2 of the input delayed by the system's lag, ``y(t) = u(t - 2 zeta / omega)``.

    ``2 zeta / omega`` is the delay of (O1) at low frequency (its unit DC gain reached after that lag),
    rounded to whole samples; the sequence starts at rest, so the delayed input is zero before it.
    """
    from ..training.losses import relative_l2
    info = ds.info
    lag = int(round(2.0 * info.get("zeta", 1.0) / info.get("omega", 1.5) / info.get("dt", 0.1)))
    u = np.asarray(ds.x_test, dtype=np.float64)
    lag = min(lag, u.shape[1])
    delayed = np.zeros_like(u)
    delayed[:, lag:] = u[:, :u.shape[1] - lag]
    return {f"no learning: y(t) = u(t - 2 zeta/omega), {lag} samples": relative_l2(
        delayed, np.asarray(ds.y_test, dtype=np.float64))[0]}


def _oscillator_kinn(order):
    def build(ds):
        return ({"model": "kinn", "input_dim": 1, "hidden_dims": [], "output_dim": 1, "dt": 0.1, "head": True,
                 "options": {"order": order, "coupling": "none", "readout": "cells", "return_sequences": True}},
                _identity)
    return build


_COSINE = {"kind": "cosine", "warmup_fraction": 0.02}

TASKS = {
    "burgers": Task(
        "burgers", "Burgers operator u(x,0) -> u(x,1), periodic, nu = 0.1 (held-out relative L2)",
        loss="relative_l2", metric="relative_l2", make_data=_burgers_data,
        models={"kinn": _burgers_kinn, "kinn-grid": _burgers_kinn_grid, "mlp": _burgers_mlp},
        settings={"small": {"epochs": 200, "lr": 1e-2, "batch_size": 32, "optimizer": "adam", "schedule": _COSINE},
                  "full": {"epochs": 1000, "lr": 3e-3, "batch_size": 32, "optimizer": "adam",
                           "schedule": _COSINE}},
        baselines=_burgers_baselines),
    "digits": Task(
        "digits", "8x8 digits (scikit-learn), 10 classes (held-out accuracy)",
        loss="cross_entropy", metric="accuracy", make_data=_digits_data,
        models={"kinn": _digits_kinn, "mlp": _digits_mlp},
        settings={"small": {"epochs": 15, "lr": 1e-2, "batch_size": 32, "optimizer": "adam", "schedule": _COSINE},
                  "full": {"epochs": 40, "lr": 1e-2, "batch_size": 32, "optimizer": "adam",
                           "schedule": {"kind": "cosine", "warmup_fraction": 0.03}}},
        baselines=_majority_baseline),
    "mnist1d": Task(
        "mnist1d", "MNIST-1D (the mnist1d package), 40-point series, 10 classes (held-out accuracy)",
        loss="cross_entropy", metric="accuracy", make_data=_mnist1d_data,
        models={"kinn": _mnist1d_grid([64, 64, 64], "mean"), "kinn-flatten": _mnist1d_grid([64, 64, 10], "flatten"),
                "kinn-static": _mnist1d_kinn_static,
                "kinn-sequence": _mnist1d_kinn_sequence, "mlp": _mnist1d_mlp},
        settings={"small": {"epochs": 5, "lr": 1e-2, "batch_size": 100, "optimizer": "adam",
                            "schedule": {"kind": "cosine", "warmup_fraction": 0.03}},
                  "full": {"epochs": 30, "lr": 1e-2, "batch_size": 100, "optimizer": "adam",
                           "schedule": {"kind": "cosine", "warmup_fraction": 0.03}}},
        baselines=_majority_baseline, data_seed=_MNIST1D_SEED),
    "oscillator": Task(
        "oscillator", "driven critically damped oscillator, sequence to sequence (held-out relative L2)",
        loss="mse", metric="relative_l2", make_data=_oscillator_data,
        models={f"kinn-k{k}": _oscillator_kinn(k) for k in (1, 2, 3)},
        settings={"small": {"epochs": 40, "lr": 0.1, "batch_size": 25, "optimizer": "adam", "schedule": _COSINE},
                  "full": {"epochs": 60, "lr": 0.1, "batch_size": 32, "optimizer": "adam", "schedule": _COSINE}},
        baselines=_oscillator_baselines),
}


def get_task(name):
    """The task called ``name``."""
    return TASKS[check_choice("task", name, tuple(TASKS))]
