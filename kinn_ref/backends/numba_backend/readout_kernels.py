"""Compiled readouts and their adjoints on a chunk (twins of :func:`kinn_ref.readout.readout` and
``readout_vjp``, eqs. 18-20), one function per readout: the pass kernels of :mod:`.loops` call the one of
their spec. Outputs are ``(B, T_out, W)``; step ``n_out`` of the chunk's rows is written."""
import numpy as np

from .dynamics_kernels import rhs, rhs_vjp
from .jit import inner


@inner
def readout_last(Y, b0, y, n_out):
    """``last`` (eq. 18): the last cell of the chunk state ``Y`` (K, rows, N) to ``y[b0:b0+rows, n_out]``."""
    K, rows, N = Y.shape
    _write_block(Y[K - 1], b0, y, n_out, 0)


@inner
def _write_block(src, b0, y, n_out, offset):
    """``y[b0 + i, n_out, offset + j] = src[i, j]`` (explicit loops: cheaper to compile than slicing)."""
    rows, N = src.shape
    for i in range(rows):
        for j in range(N):
            y[b0 + i, n_out, offset + j] = src[i, j]


@inner
def readout_cells(Y, b0, y, n_out):
    """``cells`` (eq. 19): every cell, concatenated."""
    K, rows, N = Y.shape
    for k in range(K):
        _write_block(Y[k], b0, y, n_out, k * N)


@inner
def readout_derivatives(cs, Y, cur, b0, t, y, n_out, work):
    """``derivatives`` (eq. 20): the last cell and its first K time derivatives."""
    K, rows, N = Y.shape
    _write_block(Y[K - 1], b0, y, n_out, 0)
    Z = np.empty((2, K, rows, N), Y.dtype)
    rhs(cs, Y, cur, b0, t, True, Z[0], work)
    for m in range(K):
        if m > 0:
            rhs(cs, Z[(m - 1) % 2], cur, b0, t, False, Z[m % 2], work)
        _write_block(Z[m % 2, K - 1], b0, y, n_out, (m + 1) * N)


@inner
def readout_last_vjp(dy, b0, n_out, dY):
    """Adjoint of :func:`readout_last` for the cotangent ``dy[b0:b0+rows, n_out]``: adds to ``dY``."""
    K, rows, N = dY.shape
    for i in range(rows):
        for j in range(N):
            dY[K - 1, i, j] += dy[b0 + i, n_out, j]


@inner
def readout_cells_vjp(dy, b0, n_out, dY):
    """Adjoint of :func:`readout_cells`."""
    K, rows, N = dY.shape
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dY[k, i, j] += dy[b0 + i, n_out, k * N + j]


@inner
def readout_derivatives_vjp(cs, Y, cur, b0, t, dy, n_out, dY, dI, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`readout_derivatives`: adds to ``dY`` (K, rows, N), to ``dI`` and to the sums."""
    K, rows, N = Y.shape
    Z = np.empty((K, K, rows, N), Y.dtype)                      # derivative stack, Z[m] = J^m F
    rhs(cs, Y, cur, b0, t, True, Z[0], work)
    for m in range(1, K):
        rhs(cs, Z[m - 1], cur, b0, t, False, Z[m], work)
    buf = np.empty((4, K, rows, N), Y.dtype)
    dZ_prev, F, Zc, dYr = buf[0], buf[1], buf[2], buf[3]
    dZ = np.zeros((K, rows, N), Y.dtype)
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
