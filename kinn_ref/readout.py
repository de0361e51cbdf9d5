"""Readouts (docs/math.md, section 5, eqs. 18-20; adjoint eq. 32), each beside its adjoint."""
import numpy as np

from .dynamics import rhs, rhs_vjp


def derivative_stack(circuit, coupling, Y, I):
    """Time derivatives ``Y^(m)``, m = 1..K, of the continuous system at ``Y`` with ``I`` held (eq. 20).

    ``Y^(1) = F(Y, I)`` and ``Y^(m+1) = J Y^(m)``, since (1)-(2) is linear with constant input.

    Returns
    -------
    list of ndarray, each shape (B, K, N)
    """
    Z = [rhs(circuit, coupling, Y, I)]
    for _ in range(1, Y.shape[1]):
        Z.append(rhs(circuit, coupling, Z[-1], I, affine=False))
    return Z


def readout(spec, circuit, coupling, Y, I):
    """Layer output from the stacked state ``Y`` (B, K, N) and the held input current ``I`` (B, N).

    Returns
    -------
    ndarray, shape (B, spec.readout_width)
    """
    B, K, N = Y.shape
    if spec.readout == "last":                              # eq. 18
        return Y[:, K - 1].copy()
    if spec.readout == "cells":                             # eq. 19
        return Y.reshape(B, K * N).copy()
    Z = derivative_stack(circuit, coupling, Y, I)           # eq. 20
    return np.concatenate([Y[:, K - 1]] + [z[:, K - 1] for z in Z], axis=1)


def readout_vjp(spec, circuit, coupling, Y, I, dy, acc):
    """Adjoint of :func:`readout`: ``(dY, dI)``; ``dI`` is None unless the readout depends on ``I``."""
    B, K, N = Y.shape
    if spec.readout == "last":
        dY = np.zeros_like(Y)
        dY[:, K - 1] = dy
        return dY, None
    if spec.readout == "cells":
        return dy.reshape(B, K, N).copy(), None
    Z = derivative_stack(circuit, coupling, Y, I)
    blocks = dy.reshape(B, K + 1, N)
    dZ = np.zeros_like(Y)
    for m in reversed(range(1, K)):          # Z[m] = J Z[m-1]
        dZ[:, K - 1] += blocks[:, m + 1]
        dZ, _ = rhs_vjp(circuit, coupling, Z[m - 1], I, dZ, acc, affine=False)
    dZ[:, K - 1] += blocks[:, 1]
    dY, dI = rhs_vjp(circuit, coupling, Y, I, dZ, acc)
    dY[:, K - 1] += blocks[:, 0]
    return dY, dI
