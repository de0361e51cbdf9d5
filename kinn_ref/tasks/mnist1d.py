"""MNIST-1D, made offline by the ``mnist1d`` package (the ``mnist1d`` extra).

Ten 1-D templates of length 12, each padded, dilated, scaled, translated, sheared and noised into a
series of 40 values; the package's standard arguments give 5000 series split 4000 / 1000. Its table of
held-out accuracies (logistic regression 32 %, MLP 68 %, CNN 94 %, GRU 91 %, human 96 %) is
:data:`PUBLISHED_ACCURACY`.
"""
import random

import numpy as np

#: Held-out accuracy published with the package for its standard split (data seed 42).
PUBLISHED_ACCURACY = {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91, "human": 0.96}

#: The package's own seed for its standard split.
STANDARD_SEED = 42


def make_mnist1d(seed=STANDARD_SEED, num_samples=5000):
    """The MNIST-1D series generated with the package's standard arguments and ``seed``.

    The generator seeds NumPy's and Python's global random state; both are restored afterwards, so
    drawing the data changes no other random stream.

    Parameters
    ----------
    seed : int
        Seed of the generator (42: the package's standard split).
    num_samples : int
        Series in all, a multiple of 10 (>= 10); 80 % of them are for training, as in the package.

    Returns
    -------
    x_train : ndarray, shape (0.8 num_samples, 40)
    y_train : ndarray of int, shape (0.8 num_samples,)
    x_test : ndarray, shape (0.2 num_samples, 40)
    y_test : ndarray of int, shape (0.2 num_samples,)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed (of the MNIST-1D data) must be an int in [0, 2**32), got {seed!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 10 \
            or num_samples % 10:
        raise ValueError(f"num_samples must be a positive multiple of 10, got {num_samples!r}")
    from .._optional import require
    require("mnist1d", "the mnist1d task")
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.seed, args.num_samples = int(seed), int(num_samples)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (np.asarray(data["x"], np.float64), np.asarray(data["y"], np.int64),
            np.asarray(data["x_test"], np.float64), np.asarray(data["y_test"], np.int64))


def window_features(x, radius):
    """Per-position features ``[x(p + j) for j = -radius..radius]``, zero outside the series.

    The input layout of a grid-coupled KINN over the 40 positions: its grid coupling is symmetric in
    space, and the window gives the first layer the one-sided differences that tell a rising edge from a
    falling one.

    Parameters
    ----------
    x : ndarray, shape (B, P)
    radius : int
        >= 0; 0 gives one feature per position.

    Returns
    -------
    ndarray, shape (B, P, 2 radius + 1)
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (B, P), got {x.shape}")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be an int >= 0, got {radius!r}")
    padded = np.pad(x, ((0, 0), (radius, radius)))
    P = x.shape[1]
    return np.stack([padded[:, j:j + P] for j in range(2 * radius + 1)], axis=-1)
