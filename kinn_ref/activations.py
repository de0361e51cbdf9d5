"""Elementwise activations between KINN layers, each beside its derivative."""
import numpy as np


def _relu(z):
    return np.maximum(z, 0), lambda dy: dy * (z > 0)


def _tanh(z):
    t = np.tanh(z)
    return t, lambda dy: dy * (1 - t * t)


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    s = np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)
    return s, lambda dy: dy * s * (1 - s)


def _softplus(z):
    from .parameterization import softplus, softplus_grad
    return softplus(z), lambda dy: dy * softplus_grad(z)


def _identity(z):
    return z, lambda dy: dy


ACTIVATIONS = {"relu": _relu, "tanh": _tanh, "sigmoid": _sigmoid, "softplus": _softplus, "identity": _identity}


def activation(name, z):
    """Apply activation ``name`` to ``z``; return ``(value, vjp)`` where ``vjp(dy)`` is ``dy * f'(z)``."""
    return ACTIVATIONS[name](z)
