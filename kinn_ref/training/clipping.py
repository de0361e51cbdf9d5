"""Gradient clipping by global norm."""
import numpy as np

from .._checks import check_positive_float


def global_norm(grads):
    """``sqrt(sum over arrays of sum(g^2))`` of a dict of gradient arrays."""
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_by_global_norm(grads, max_norm):
    """Scale every gradient in place by ``min(1, max_norm / global_norm)``.

    Parameters
    ----------
    grads : dict of str -> ndarray
        Updated in place.
    max_norm : float
        Largest allowed global norm, > 0.

    Returns
    -------
    float
        The global norm before clipping.
    """
    max_norm = check_positive_float("max_norm", max_norm)
    norm = global_norm(grads)
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm
