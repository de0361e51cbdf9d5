"""Compiled implicit-step solves with the factorisations made once per pass in :mod:`.constants`
(twins of ``DiagonalSolver``, ``DenseSolver`` and ``GridSolver`` in :mod:`kinn_ref.coupling`, eq. 15).

Each solve works in place on a chunk ``R`` of right-hand sides, shape ``(rows, N)``.
"""
import numpy as np

from .codes import NODE_CI, TRI_D, TRI_DL, TRI_DU, TRI_DU2, TRI_W
from .jit import by_coupling, inner


@inner
def _lu_solve_row(lu, lu_T, piv, x):
    """``M x = r`` in place with ``M = P L U`` from ``scipy.linalg.lu_factor`` (LAPACK getrs order)."""
    N = x.shape[0]
    for j in range(N):
        q = piv[j]
        if q != j:
            t = x[j]
            x[j] = x[q]
            x[q] = t
    for j in range(N):                       # L y = x, unit diagonal, by columns of L
        xj = x[j]
        col = lu_T[j]
        for m in range(j + 1, N):
            x[m] -= col[m] * xj
    for j in range(N - 1, -1, -1):           # U x = y, by columns of U
        x[j] /= lu[j, j]
        xj = x[j]
        col = lu_T[j]
        for m in range(j):
            x[m] -= col[m] * xj


@inner
def _lu_solve_T_row(lu, piv, x):
    """``M^T x = z`` in place: ``U^T y = z``, ``L^T w = y``, ``x = P w``."""
    N = x.shape[0]
    for j in range(N):
        x[j] /= lu[j, j]
        xj = x[j]
        row = lu[j]
        for m in range(j + 1, N):
            x[m] -= row[m] * xj
    for j in range(N - 1, -1, -1):
        xj = x[j]
        row = lu[j]
        for m in range(j):
            x[m] -= row[m] * xj
    for j in range(N - 1, -1, -1):
        q = piv[j]
        if q != j:
            t = x[j]
            x[j] = x[q]
            x[q] = t


@inner
def _tridiagonal_solve(cs, k, mode, b):
    """Solve the factorised tridiagonal systems of all channels of one first-axis ``mode`` in place.

    ``b`` is ``(P1 * H,)`` with the channel index fastest, viewed as ``(P1, H)`` rows so the loops over
    channels vectorise. Mirrors LAPACK ``gttrs`` (row swaps as selects; systems factorised without a
    swap take the shorter elimination), then the Sherman-Morrison correction of periodic axes.
    """
    H, n = cs.H, cs.P1
    b2 = b.reshape(n, H)
    tri = cs.tri
    dl, d, du, du2 = tri[TRI_DL, k, mode], tri[TRI_D, k, mode], tri[TRI_DU, k, mode], tri[TRI_DU2, k, mode]
    if cs.tri_pivoted[k, mode]:
        swap = cs.tri_swap[k, mode]
        for i in range(n - 1):
            top, bot, lw, sw = b2[i], b2[i + 1], dl[i], swap[i]
            for h in range(H):
                t, u = top[h], bot[h]
                s = sw[h] != 0
                top[h] = u if s else t
                bot[h] = (t - lw[h] * u) if s else (u - lw[h] * t)
    else:
        for i in range(n - 1):
            top, bot, lw = b2[i], b2[i + 1], dl[i]
            for h in range(H):
                bot[h] -= lw[h] * top[h]
    last, dn = b2[n - 1], d[n - 1]
    for h in range(H):
        last[h] /= dn[h]
    if n > 1:
        row, nxt, a, dd = b2[n - 2], b2[n - 1], du[n - 2], d[n - 2]
        for h in range(H):
            row[h] = (row[h] - a[h] * nxt[h]) / dd[h]
    if cs.tri_pivoted[k, mode]:
        for i in range(n - 3, -1, -1):
            row, nxt, nxt2, a, a2, dd = b2[i], b2[i + 1], b2[i + 2], du[i], du2[i], d[i]
            for h in range(H):
                row[h] = (row[h] - a[h] * nxt[h] - a2[h] * nxt2[h]) / dd[h]
    else:
        for i in range(n - 3, -1, -1):
            row, nxt, a, dd = b2[i], b2[i + 1], du[i], d[i]
            for h in range(H):
                row[h] = (row[h] - a[h] * nxt[h]) / dd[h]
    if cs.cyclic:
        w, rho = cs.tri[TRI_W, k, mode], cs.tri_rho[k, mode]
        first, last = b2[0], b2[n - 1]
        coef = np.empty(H, b.dtype)
        for h in range(H):
            coef[h] = first[h] + rho[h] * last[h]
        for i in range(n):
            row, wi = b2[i], w[i]
            for h in range(H):
                row[h] -= coef[h] * wi[h]


def _solve_none(cs, k, R, work):
    c = cs.node[NODE_CI, k]
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            R[i, j] = R[i, j] / c[j]


def _solve_matrix(cs, k, R, work):
    for i in range(R.shape[0]):
        _lu_solve_row(cs.lus[0, k], cs.lus[1, k], cs.piv[k], R[i])


def _solve_grid(cs, k, R, work):
    """Per row: to the eigenbasis of the first axis, one tridiagonal solve per mode, back (eq. 15, grid)."""
    P0, m = cs.P0, cs.P1 * cs.H
    for i in range(R.shape[0]):
        if P0 == 1:
            _tridiagonal_solve(cs, k, 0, R[i])
            continue
        Ri, Wi = R[i].reshape(P0, m), work[i].reshape(P0, m)
        np.dot(cs.Q[1], Ri, Wi)
        for mode in range(P0):
            _tridiagonal_solve(cs, k, mode, Wi[mode])
        np.dot(cs.Q[0], Wi, Ri)


@by_coupling(none=_solve_none, matrix=_solve_matrix, grid=_solve_grid)
def solve(cs, k, R, work):
    """Implicit solve of cell ``k``: rows of ``R`` become ``rhs (diag(c_k) - A_k)^{-T}`` (in place)."""


def _solve_T_matrix(cs, k, R, work):
    for i in range(R.shape[0]):
        _lu_solve_T_row(cs.lus[0, k], cs.piv[k], R[i])


def _solve_T_symmetric(cs, k, R, work):
    solve(cs, k, R, work)                    # the compiled solve itself, not a second copy of it


@by_coupling(none=_solve_none, matrix=_solve_T_matrix, grid=_solve_T_symmetric)   # diagonal and grid: symmetric
def solve_T(cs, k, R, work):
    """Adjoint solve of cell ``k`` in place (``solve_T`` of the reference solvers)."""
