"""The 8x8 handwritten digits that scikit-learn ships (1797 images, 10 classes; the ``digits`` extra)."""
import numpy as np

from .._checks import check_seed


def load_digits_split(test_fraction=0.2, seed=0):
    """Digits scaled to ``[0, 1]``, split into training and held-out parts, stratified by class.

    Parameters
    ----------
    test_fraction : float
        Share of each class held out, in (0, 1).
    seed : int
        Seed of the split.

    Returns
    -------
    x_train : ndarray, shape (n_train, 64)
    y_train : ndarray of int, shape (n_train,)
    x_test : ndarray, shape (n_test, 64)
    y_test : ndarray of int, shape (n_test,)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from .._optional import require
    require("sklearn", "the digits task")
    from sklearn.datasets import load_digits
    data = load_digits()
    x, y = data.data / 16.0, data.target.astype(np.int64)
    rng = np.random.default_rng(check_seed("seed", seed))
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[:int(round(test_fraction * len(idx)))]] = True
    return x[~test], y[~test], x[test], y[test]
