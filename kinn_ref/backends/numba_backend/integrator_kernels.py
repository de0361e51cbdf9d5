"""Compiled one-step methods and their adjoints on a chunk (twins of the integrators of
:mod:`kinn_ref.integrators`, eqs. 12-16 and 36).

Chunk states are ``(K, rows, N)``; ``ws`` is a workspace of shape ``(N_WORKSPACES, K, rows, N)``,
``work`` one of ``(rows, N)`` and ``work_nn`` one of ``(N, N)`` (dense/kirchhoff only). Gradient sums go
to one slot's ``node_sums`` ``(N_NODE_SUMS, K, N)`` and ``mat_sums`` ``(N_MATRIX_SUMS, K, N, N)``.
"""
import numpy as np

from .codes import (GRID, MAT_EXP, NODE_BETA, NODE_C, NODE_E, NODE_H, NODE_LEAK, NODE_P, NODE_S, NONE, SUM_BETA,
                    SUM_C, SUM_GRID_OFF, SUM_LEAK, SUM_PASS1, SUM_PASS2)
from .coupling_kernels import accumulate_grad, add_matrix_sum, apply, apply_T, grid_offdiag_rows
from .dynamics_kernels import rhs, rhs_vjp
from .jit import inner
from .solver_kernels import solve, solve_T

N_WORKSPACES = 5   # trapezoidal's adjoint uses all five; the others up to four


@inner
def _copy(src, dst):
    """``dst[...] = src`` for chunk states (explicit loops: cheaper to compile than slice assignment)."""
    K, rows, N = src.shape
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dst[k, i, j] = src[k, i, j]


@inner
def euler_step(cs, Y, cur, b0, t, Yn, ws, work):
    """``Y_next = Y + dt F(Y, I)`` (eq. 12)."""
    F = ws[0]
    rhs(cs, Y, cur, b0, t, True, F, work)
    dt = cs.dt
    K, rows, N = Y.shape
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                Yn[k, i, j] = Y[k, i, j] + dt * F[k, i, j]


@inner
def expeuler_step(cs, Y, cur, b0, t, Yn, work):
    """``V_k <- E_k V_k + p_k (V_k O_k^T - leak_k + u_k^n)`` (eqs. 13-14)."""
    K, rows, N = Y.shape
    coupled = cs.coupling != NONE
    for k in range(K):
        nd = cs.node
        E, p, leak, beta = nd[NODE_E, k], nd[NODE_P, k], nd[NODE_LEAK, k], nd[NODE_BETA, k]
        if coupled:
            apply(cs, k, Y[k], work, True)
            for i in range(rows):
                for j in range(N):
                    u = cur[b0 + i, t, j] if k == 0 else beta[j] * Y[k - 1, i, j]
                    Yn[k, i, j] = E[j] * Y[k, i, j] + p[j] * ((work[i, j] - leak[j]) + u)
        else:
            for i in range(rows):
                for j in range(N):
                    u = cur[b0 + i, t, j] if k == 0 else beta[j] * Y[k - 1, i, j]
                    Yn[k, i, j] = E[j] * Y[k, i, j] + p[j] * (u - leak[j])


@inner
def implicit_step(cs, Y, cur, b0, t, Yn, work):
    """Backward Euler with block forward substitution over the cascade (eq. 15)."""
    K, rows, N = Y.shape
    for k in range(K):
        h, leak, beta = cs.node[NODE_H, k], cs.node[NODE_LEAK, k], cs.node[NODE_BETA, k]
        R = Yn[k]
        for i in range(rows):
            for j in range(N):
                u = cur[b0 + i, t, j] if k == 0 else beta[j] * Yn[k - 1, i, j]
                R[i, j] = (h[j] * Y[k, i, j] - leak[j]) + u
        solve(cs, k, R, work)


@inner
def trapezoidal_step(cs, Y, cur, b0, t, Yn, ws, work):
    """Trapezoidal rule, cells in order: the system of :func:`implicit_step` (``h = 2 C/dt``) with the
    start-of-step current ``C_k F_k(Y, I)`` added to its right-hand side (eq. 36)."""
    F = ws[0]
    rhs(cs, Y, cur, b0, t, True, F, work)
    K, rows, N = Y.shape
    for k in range(K):
        h, C, leak, beta = cs.node[NODE_H, k], cs.node[NODE_C, k], cs.node[NODE_LEAK, k], cs.node[NODE_BETA, k]
        R, Fk = Yn[k], F[k]
        for i in range(rows):
            for j in range(N):
                u = cur[b0 + i, t, j] if k == 0 else beta[j] * Yn[k - 1, i, j]
                R[i, j] = ((h[j] * Y[k, i, j] + C[j] * Fk[i, j]) - leak[j]) + u
        solve(cs, k, R, work)


@inner
def _rk4_stage(cs, Y, F, stage, out):
    """Stage state ``Y + dt c_stage F`` (eq. 16)."""
    a = cs.rk4[1, stage]
    K, rows, N = Y.shape
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                out[k, i, j] = Y[k, i, j] + a * F[k, i, j]


@inner
def rk4_step(cs, Y, cur, b0, t, Yn, ws, work):
    """Classical Runge-Kutta 4, input held at ``I^n`` (eq. 16)."""
    F, St = ws[0], ws[1]
    K, rows, N = Y.shape
    for stage in range(4):
        if stage == 0:
            rhs(cs, Y, cur, b0, t, True, F, work)
        else:
            _rk4_stage(cs, Y, F, stage, St)
            rhs(cs, St, cur, b0, t, True, F, work)
        w = cs.rk4[0, stage]
        for k in range(K):
            for i in range(rows):
                for j in range(N):
                    base = Y[k, i, j] if stage == 0 else Yn[k, i, j]
                    Yn[k, i, j] = base + w * F[k, i, j]


@inner
def euler_step_vjp(cs, Y, cur, b0, t, dYn, dY, dI, ws, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`euler_step`: ``dY = dYn + rhs_vjp(dt dYn)``."""
    dF = ws[2]
    dt = cs.dt
    K, rows, N = Y.shape
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dF[k, i, j] = dt * dYn[k, i, j]
    rhs_vjp(cs, Y, cur, b0, t, dF, True, dY, dI, ws[0], ws[1], work, node_sums, mat_sums, work_nn)
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dY[k, i, j] += dYn[k, i, j]


@inner
def expeuler_step_vjp(cs, Y, cur, b0, t, dYn, dY, dI, ws, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`expeuler_step`.

    With ``r = p_k dV'_k``: ``dE_k += sum dV'_k V_k``, ``dp_k += sum dV'_k q_k``,
    ``dV_k = E_k dV'_k + r O_k``, ``dleak_k -= sum r``, ``dbeta_k += sum r V_{k-1}``,
    ``dV_{k-1} += beta_k r``, ``dI += r`` (k = 1). Dense/kirchhoff keep ``sum dV'^T V`` instead of the
    coupling's share of ``dp`` and of the gradient of ``O`` (both follow from it once per pass).
    """
    K, rows, N = Y.shape
    grid = cs.coupling == GRID
    r, offV = ws[0][0], ws[1][0]
    for k in range(K):
        nd = cs.node
        E, p, leak, beta = nd[NODE_E, k], nd[NODE_P, k], nd[NODE_LEAK, k], nd[NODE_BETA, k]
        sE, sp = node_sums[SUM_PASS1, k], node_sums[SUM_PASS2, k]
        sleak, sbeta, sgrid = node_sums[SUM_LEAK, k], node_sums[SUM_BETA, k], node_sums[SUM_GRID_OFF, k]
        dV1, V = dYn[k], Y[k]
        grid_offdiag_rows(cs, V, offV)
        acc = np.zeros((4, N), Y.dtype)    # this chunk's sums over rows, in the computation dtype
        aE, ap, aleak, abeta = acc[0], acc[1], acc[2], acc[3]
        for i in range(rows):          # loops without branches inside, so that they vectorise
            d_, v_, r_, dy_ = dV1[i], V[i], r[i], dY[k, i]
            for j in range(N):
                d = d_[j]
                rj = p[j] * d
                r_[j] = rj
                aE[j] += d * v_[j]
                aleak[j] -= rj
                dy_[j] = E[j] * d
            if k == 0:
                u_, di_ = cur[b0 + i, t], dI[b0 + i, t]
                for j in range(N):
                    ap[j] += d_[j] * (u_[j] - leak[j])
                    di_[j] += r_[j]
            else:
                u_, dyp_ = Y[k - 1, i], dY[k - 1, i]
                for j in range(N):
                    ap[j] += d_[j] * (beta[j] * u_[j] - leak[j])
                    abeta[j] += r_[j] * u_[j]
                    dyp_[j] += beta[j] * r_[j]
            if grid:
                s, o_ = cs.node[NODE_S, k], offV[i]
                for j in range(N):
                    ap[j] += d_[j] * (s[j] * o_[j])
                    sgrid[j] += r_[j] * o_[j]
        for j in range(N):
            sE[j] += aE[j]
            sp[j] += ap[j]
            sleak[j] += aleak[j]
            sbeta[j] += abeta[j]
        add_matrix_sum(cs, k, MAT_EXP, dV1, V, mat_sums, work_nn)
        if cs.coupling != NONE:
            apply_T(cs, k, r, work, True)
            for i in range(rows):
                dy_, w_ = dY[k, i], work[i]
                for j in range(N):
                    dy_[j] += w_[j]


@inner
def implicit_step_vjp(cs, Y, Yn, cur, b0, t, dYn, dY, dI, ws, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`implicit_step`, cells in reverse: ``lam_k = solve_T(dV'_k)``,
    ``dV_k = h_k lam_k``, ``dh_k += sum lam_k V_k``, ``dc_k -= sum lam_k V'_k``, coupling gradient of
    ``(lam_k, V'_k)``, ``dleak_k -= sum lam_k``, ``dbeta_k += sum lam_k V'_{k-1}``,
    ``dV'_{k-1} += beta_k lam_k``, ``dI += lam_1``; leaves ``lam`` in ``ws[0]``."""
    K, rows, N = Y.shape
    D = ws[0]
    _copy(dYn, D)
    for k in range(K - 1, -1, -1):
        lam = D[k]
        solve_T(cs, k, lam, work)
        h, beta = cs.node[NODE_H, k], cs.node[NODE_BETA, k]
        sh, sc = node_sums[SUM_PASS1, k], node_sums[SUM_PASS2, k]
        sleak, sbeta = node_sums[SUM_LEAK, k], node_sums[SUM_BETA, k]
        for i in range(rows):
            l_, y_, yn_, dy_ = lam[i], Y[k, i], Yn[k, i], dY[k, i]
            for j in range(N):
                lj = l_[j]
                dy_[j] = h[j] * lj
                sh[j] += lj * y_[j]
                sc[j] -= lj * yn_[j]
                sleak[j] -= lj
            if k == 0:
                di_ = dI[b0 + i, t]
                for j in range(N):
                    di_[j] += l_[j]
            else:
                yp_, dp_ = Yn[k - 1, i], D[k - 1, i]
                for j in range(N):
                    sbeta[j] += l_[j] * yp_[j]
                    dp_[j] += beta[j] * l_[j]
        accumulate_grad(cs, k, lam, Yn[k], node_sums, mat_sums, True, work, work_nn)


@inner
def trapezoidal_step_vjp(cs, Y, Yn, cur, b0, t, dYn, dY, dI, ws, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`trapezoidal_step` (eq. 37): :func:`implicit_step_vjp` of the solves
    (``lam_k`` left in ``ws[0]``), ``dC_k += sum lam_k F_k``, then the start-of-step current through
    :func:`rhs_vjp` with the cotangent ``C_k lam_k``, added to ``dY``."""
    K, rows, N = Y.shape
    implicit_step_vjp(cs, Y, Yn, cur, b0, t, dYn, dY, dI, ws, work, node_sums, mat_sums, work_nn)
    D, F, dF, dYs = ws[0], ws[1], ws[2], ws[3]
    rhs(cs, Y, cur, b0, t, True, F, work)
    for k in range(K):
        C, sC = cs.node[NODE_C, k], node_sums[SUM_C, k]
        for i in range(rows):
            for j in range(N):
                sC[j] += D[k, i, j] * F[k, i, j]
                dF[k, i, j] = C[j] * D[k, i, j]
    rhs_vjp(cs, Y, cur, b0, t, dF, True, dYs, dI, F, ws[4], work, node_sums, mat_sums, work_nn)
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dY[k, i, j] += dYs[k, i, j]


@inner
def rk4_step_vjp(cs, Y, cur, b0, t, dYn, dY, dI, ws, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`rk4_step` through its four stages (recomputed from ``Y``)."""
    K, rows, N = Y.shape
    F, dslope, dstate = ws[0], ws[1], ws[2]
    stages = np.empty((3, K, rows, N), Y.dtype)       # stage states 1..3 (stage 0 is Y)
    rhs(cs, Y, cur, b0, t, True, F, work)
    for stage in range(1, 4):
        _rk4_stage(cs, Y, F, stage, stages[stage - 1])
        if stage < 3:
            rhs(cs, stages[stage - 1], cur, b0, t, True, F, work)
    _copy(dYn, dY)
    w3 = cs.rk4[0, 3]
    for k in range(K):
        for i in range(rows):
            for j in range(N):
                dslope[k, i, j] = w3 * dYn[k, i, j]
    for stage in range(3, -1, -1):
        S = Y if stage == 0 else stages[stage - 1]
        rhs_vjp(cs, S, cur, b0, t, dslope, True, dstate, dI, F, ws[3], work, node_sums, mat_sums, work_nn)
        for k in range(K):
            for i in range(rows):
                for j in range(N):
                    dY[k, i, j] += dstate[k, i, j]
        if stage > 0:
            w, a = cs.rk4[0, stage - 1], cs.rk4[1, stage]
            for k in range(K):
                for i in range(rows):
                    for j in range(N):
                        dslope[k, i, j] = w * dYn[k, i, j] + a * dstate[k, i, j]
