"""Compiled coupling operators on a chunk of batch rows (twins of :mod:`kinn_ref.coupling`, eqs. 4-7).

A chunk holds the states of ``rows`` batch rows of one cell as a ``(rows, N)`` array. Dense and
kirchhoff products are BLAS matrix products of the whole chunk; the grid is a stencil over the mesh
(never an ``N x N`` matrix); ``none`` has no coupling term.
"""
import numpy as np
from numba import njit

from .codes import (COUP_A, COUP_A_T, COUP_O, COUP_O_T, DENSE, GRID, KIRCHHOFF, MAT_ZV, NODE_S, NONE,
                    SUM_GRID_OFF, SUM_ZV)


@njit
def grid_offdiag(cs, v, out):
    """``out = (L0 - diag(L0)) v`` per channel for one row ``v`` of ``N = P*H`` nodes (unit conductance).

    Rows are viewed as ``(P, H)`` so the loops over channels run on contiguous rows and vectorise.
    """
    H = cs.H
    P = cs.lap_ptr.shape[0] - 1
    V2, O2 = v.reshape(P, H), out.reshape(P, H)
    for q in range(P):
        o = O2[q]
        for h in range(H):
            o[h] = 0.0
        for e in range(cs.lap_ptr[q], cs.lap_ptr[q + 1]):
            src = V2[cs.lap_idx[e]]
            w = cs.lap_val[e]
            for h in range(H):
                o[h] += w * src[h]


@njit
def apply(cs, k, V, out, off):
    """``out = V A_k^T`` (``off=False``) or ``V O_k^T`` (``off=True``); twin of ``Coupling.apply`` and
    ``Coupling.apply_off``. ``V``, ``out``: ``(rows, N)``."""
    kind = cs.coupling
    if kind == NONE:
        out[:, :] = 0.0
    elif kind == GRID:
        s = cs.node[NODE_S, k]
        for i in range(V.shape[0]):
            grid_offdiag(cs, V[i], out[i])
            if off:
                for j in range(V.shape[1]):
                    out[i, j] = s[j] * out[i, j]
            else:
                for j in range(V.shape[1]):
                    out[i, j] = s[j] * (out[i, j] + cs.lap_diag[j] * V[i, j])
    elif off:
        np.dot(V, cs.coupling_mats[COUP_O_T, k], out)
    else:
        np.dot(V, cs.coupling_mats[COUP_A_T, k], out)


@njit
def apply_T(cs, k, Z, out, off):
    """Adjoint of :func:`apply`: ``out = Z A_k`` or ``Z O_k``; twin of ``Coupling.apply_T`` and
    ``Coupling.apply_off_T`` (the grid Laplacian is symmetric)."""
    if cs.coupling == DENSE or cs.coupling == KIRCHHOFF:
        if off:
            np.dot(Z, cs.coupling_mats[COUP_O, k], out)
        else:
            np.dot(Z, cs.coupling_mats[COUP_A, k], out)
    else:
        apply(cs, k, Z, out, off)


@njit
def accumulate_grad(cs, k, Z, V, node_sums, mat_sums, full, work, work_nn):
    """Add the gradient of ``sum(Z * (V A_k^T))`` (``full``) or ``sum(Z * (V O_k^T))`` to the sums.

    Twin of ``Coupling.grad`` / ``Coupling.grad_off``, kept as sums that :mod:`.gradients` turns into
    the coupling gradient once per pass: dense/kirchhoff add ``Z^T V`` to ``mat_sums[MAT_ZV, k]``; grid
    adds ``Z * (off-diagonal L0 V)`` per node; full contributions also add ``Z * V`` per node (the
    diagonal part, chained through ``Coupling.diag_grad``).

    Parameters
    ----------
    Z, V : ndarray, shape (rows, N)
    node_sums : ndarray, shape (N_NODE_SUMS, K, N), float64
    mat_sums : ndarray, shape (N_MATRIX_SUMS, K, N, N), float64
    work : ndarray, shape (rows, N)
    work_nn : ndarray, shape (N, N) for dense/kirchhoff
    """
    kind = cs.coupling
    if kind == NONE:
        return
    rows, N = Z.shape
    if kind == GRID:
        for i in range(rows):
            grid_offdiag(cs, V[i], work[i])
            acc = node_sums[SUM_GRID_OFF, k]
            for j in range(N):
                acc[j] += Z[i, j] * work[i, j]
    else:
        np.dot(Z.T, V, work_nn)
        m = mat_sums[MAT_ZV, k]
        for a in range(N):
            ma, wa = m[a], work_nn[a]
            for b in range(N):
                ma[b] += wa[b]
    if full:
        acc = node_sums[SUM_ZV, k]
        for i in range(rows):
            for j in range(N):
                acc[j] += Z[i, j] * V[i, j]
