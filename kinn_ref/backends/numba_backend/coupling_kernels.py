"""Compiled coupling operators on a chunk of batch rows (twins of :mod:`kinn_ref.coupling`, eqs. 4-7).

A chunk holds the states of ``rows`` batch rows of one cell as a ``(rows, N)`` array. Dense and
kirchhoff products are BLAS matrix products of the whole chunk (the ``matrix`` kind); the grid is a
stencil over the mesh (never an ``N x N`` matrix); ``none`` has no coupling term. Each operator is
compiled for the coupling kind of the pass only (:func:`.jit.by_coupling`).
"""
import numpy as np

from .codes import COUP_A, COUP_A_T, COUP_O, COUP_O_T, MAT_ZV, NODE_S, SUM_GRID_OFF, SUM_ZV
from .jit import by_coupling, inner


@inner
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


# --------------------------------------------------------------------------- apply
def _apply_none(cs, k, V, out, off):
    for i in range(V.shape[0]):
        for j in range(V.shape[1]):
            out[i, j] = 0.0


def _apply_matrix(cs, k, V, out, off):
    if off:
        np.dot(V, cs.coupling_mats[COUP_O_T, k], out)
    else:
        np.dot(V, cs.coupling_mats[COUP_A_T, k], out)


def _apply_grid(cs, k, V, out, off):
    s = cs.node[NODE_S, k]
    for i in range(V.shape[0]):
        grid_offdiag(cs, V[i], out[i])
        if off:
            for j in range(V.shape[1]):
                out[i, j] = s[j] * out[i, j]
        else:
            for j in range(V.shape[1]):
                out[i, j] = s[j] * (out[i, j] + cs.lap_diag[j] * V[i, j])


@by_coupling(none=_apply_none, matrix=_apply_matrix, grid=_apply_grid)
def apply(cs, k, V, out, off):
    """``out = V A_k^T`` (``off=False``) or ``V O_k^T`` (``off=True``); twin of ``Coupling.apply`` and
    ``Coupling.apply_off``. ``V``, ``out``: ``(rows, N)``."""


# --------------------------------------------------------------------------- apply_T
def _apply_T_matrix(cs, k, V, out, off):
    if off:
        np.dot(V, cs.coupling_mats[COUP_O, k], out)
    else:
        np.dot(V, cs.coupling_mats[COUP_A, k], out)


def _apply_T_symmetric(cs, k, V, out, off):
    apply(cs, k, V, out, off)                # the compiled apply itself, not a second copy of it


@by_coupling(none=_apply_none, matrix=_apply_T_matrix, grid=_apply_T_symmetric)   # the grid Laplacian is symmetric
def apply_T(cs, k, V, out, off):
    """Adjoint of :func:`apply`: ``out = V A_k`` or ``V O_k``; twin of ``Coupling.apply_T`` and
    ``Coupling.apply_off_T``."""


# --------------------------------------------------------------------------- gradient sums
@inner
def _add_zv(k, Z, V, node_sums):
    acc = node_sums[SUM_ZV, k]
    for i in range(Z.shape[0]):
        for j in range(Z.shape[1]):
            acc[j] += Z[i, j] * V[i, j]


@inner
def _add_product(Z, V, m, work_nn):
    """``m += Z^T V`` for chunks ``Z``, ``V`` of shape ``(rows, N)``."""
    N = Z.shape[1]
    np.dot(Z.T, V, work_nn)
    for a in range(N):
        ma, wa = m[a], work_nn[a]
        for b in range(N):
            ma[b] += wa[b]


def _nothing_matrix(cs, k, row, Z, V, mat_sums, work_nn):
    pass


def _add_matrix(cs, k, row, Z, V, mat_sums, work_nn):
    _add_product(Z, V, mat_sums[row, k], work_nn)


@by_coupling(none=_nothing_matrix, matrix=_add_matrix, grid=_nothing_matrix)
def add_matrix_sum(cs, k, row, Z, V, mat_sums, work_nn):
    """Dense/kirchhoff: ``mat_sums[row, k] += Z^T V``; nothing for the other couplings."""


def _nothing_offdiag(cs, V, out):
    pass


def _offdiag_grid(cs, V, out):
    for i in range(V.shape[0]):
        grid_offdiag(cs, V[i], out[i])


@by_coupling(none=_nothing_offdiag, matrix=_nothing_offdiag, grid=_offdiag_grid)
def grid_offdiag_rows(cs, V, out):
    """Grid: :func:`grid_offdiag` of every row of ``V`` (rows, N) into ``out``; nothing otherwise."""


def _accumulate_none(cs, k, Z, V, node_sums, mat_sums, full, work, work_nn):
    pass


def _accumulate_matrix(cs, k, Z, V, node_sums, mat_sums, full, work, work_nn):
    _add_product(Z, V, mat_sums[MAT_ZV, k], work_nn)
    if full:
        _add_zv(k, Z, V, node_sums)


def _accumulate_grid(cs, k, Z, V, node_sums, mat_sums, full, work, work_nn):
    rows, N = Z.shape
    acc = node_sums[SUM_GRID_OFF, k]
    for i in range(rows):
        grid_offdiag(cs, V[i], work[i])
        for j in range(N):
            acc[j] += Z[i, j] * work[i, j]
    if full:
        _add_zv(k, Z, V, node_sums)


@by_coupling(none=_accumulate_none, matrix=_accumulate_matrix, grid=_accumulate_grid)
def accumulate_grad(cs, k, Z, V, node_sums, mat_sums, full, work, work_nn):
    """Add the gradient of ``sum(Z * (V A_k^T))`` (``full``) or ``sum(Z * (V O_k^T))`` to the sums.

    Twin of ``Coupling.grad`` / ``Coupling.grad_off``, kept as sums that :mod:`.gradients` turns into
    the coupling gradient once per pass: dense/kirchhoff add ``Z^T V`` to ``mat_sums[MAT_ZV, k]``; grid
    adds ``Z * (off-diagonal L0 V)`` per node; full contributions also add ``Z * V`` per node (the
    diagonal part, chained through ``Coupling.diag_grad``); ``none`` adds nothing.

    Parameters
    ----------
    Z, V : ndarray, shape (rows, N)
    node_sums : ndarray, shape (N_NODE_SUMS, K, N), float64
    mat_sums : ndarray, shape (N_MATRIX_SUMS, K, N, N), float64
    work : ndarray, shape (rows, N)
    work_nn : ndarray, shape (N, N) for dense/kirchhoff
    """
