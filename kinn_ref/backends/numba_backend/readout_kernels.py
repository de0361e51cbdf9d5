"""Compiled readouts and their adjoints on a chunk (twins of :func:`kinn_ref.readout.readout` and
``readout_vjp``, eqs. 18-20). Outputs are ``(B, T_out, W)``; step ``n_out`` of the chunk's rows is written."""
import numpy as np
from numba import njit

from .codes import CELLS, LAST
from .dynamics_kernels import rhs, rhs_vjp


@njit(cache=True)
def readout(cs, Y, cur, b0, t, y, n_out, work):
    """Write the readout of the chunk state ``Y`` (K, rows, N) to ``y[b0:b0+rows, n_out]``."""
    K, rows, N = Y.shape
    kind = cs.readout
    if kind == LAST:
        for i in range(rows):
            y[b0 + i, n_out, :] = Y[K - 1, i, :]
    elif kind == CELLS:
        for k in range(K):
            for i in range(rows):
                y[b0 + i, n_out, k * N:(k + 1) * N] = Y[k, i, :]
    else:                                                       # derivatives, eq. 20
        for i in range(rows):
            y[b0 + i, n_out, 0:N] = Y[K - 1, i, :]
        Z = np.empty((2, K, rows, N), Y.dtype)
        rhs(cs, Y, cur, b0, t, True, Z[0], work)
        for m in range(K):
            if m > 0:
                rhs(cs, Z[(m - 1) % 2], cur, b0, t, False, Z[m % 2], work)
            for i in range(rows):
                y[b0 + i, n_out, (m + 1) * N:(m + 2) * N] = Z[m % 2, K - 1, i, :]


@njit(cache=True)
def readout_vjp(cs, Y, cur, b0, t, dy, n_out, dY, dI, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`readout` for the cotangent ``dy[b0:b0+rows, n_out]``: adds to ``dY``
    (K, rows, N), to ``dI`` (derivatives readout) and to the gradient sums."""
    K, rows, N = Y.shape
    kind = cs.readout
    if kind == LAST:
        for i in range(rows):
            for j in range(N):
                dY[K - 1, i, j] += dy[b0 + i, n_out, j]
        return
    if kind == CELLS:
        for k in range(K):
            for i in range(rows):
                for j in range(N):
                    dY[k, i, j] += dy[b0 + i, n_out, k * N + j]
        return
    Z = np.empty((K, K, rows, N), Y.dtype)                      # derivative stack, Z[m] = J^m F
    rhs(cs, Y, cur, b0, t, True, Z[0], work)
    for m in range(1, K):
        rhs(cs, Z[m - 1], cur, b0, t, False, Z[m], work)
    buf = np.empty((5, K, rows, N), Y.dtype)
    dZ, dZ_prev, F, Zc, dYr = buf[0], buf[1], buf[2], buf[3], buf[4]
    dZ[:, :, :] = 0.0
    for m in range(K - 1, 0, -1):                               # Z[m] = J Z[m-1]
        for i in range(rows):
            for j in range(N):
                dZ[K - 1, i, j] += dy[b0 + i, n_out, (m + 1) * N + j]
        rhs_vjp(cs, Z[m - 1], cur, b0, t, dZ, False, dZ_prev, dI, F, Zc, work, node_sums, mat_sums,
                work_nn)
        dZ, dZ_prev = dZ_prev, dZ
    for i in range(rows):
        for j in range(N):
            dZ[K - 1, i, j] += dy[b0 + i, n_out, N + j]
    rhs_vjp(cs, Y, cur, b0, t, dZ, True, dYr, dI, F, Zc, work, node_sums, mat_sums, work_nn)
    for i in range(rows):
        for j in range(N):
            dYr[K - 1, i, j] += dy[b0 + i, n_out, j]
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dY[k, i, j] += dYr[k, i, j]
