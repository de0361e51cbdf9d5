"""Compiled Kirchhoff current law on a chunk (twins of :func:`kinn_ref.dynamics.rhs` and ``rhs_vjp``,
eqs. 1-3).

Chunk states are ``(K, rows, N)``; the input current of the chunk's rows at the current step is
``cur[b0 + i, t]`` of the pass's ``(B, T_in, N)`` currents.
"""

from .codes import NODE_BETA, NODE_C, NODE_G, NODE_LEAK, NONE, SUM_BETA, SUM_C, SUM_G, SUM_LEAK
from .coupling_kernels import accumulate_grad, apply, apply_T
from .jit import inner


@inner
def rhs(cs, Y, cur, b0, t, affine, F, work):
    """``F = F(Y, I)`` (eqs. 1-3); without ``leak`` and ``I`` when ``affine`` is False (eq. 20).

    Parameters
    ----------
    Y, F : ndarray, shape (K, rows, N)
    cur : ndarray, shape (B, T_in, N)
    b0, t : int
        First batch row of the chunk and input step.
    work : ndarray, shape (rows, N)
    """
    K, rows, N = Y.shape
    coupled = cs.coupling != NONE
    for k in range(K):
        if coupled:
            apply(cs, k, Y[k], work, False)
        nd = cs.node
        g, C, leak, beta = nd[NODE_G, k], nd[NODE_C, k], nd[NODE_LEAK, k], nd[NODE_BETA, k]
        for i in range(rows):
            for j in range(N):
                c = (work[i, j] if coupled else 0.0) - g[j] * Y[k, i, j]
                if affine:
                    c = c - leak[j]
                    if k == 0:
                        c = c + cur[b0 + i, t, j]
                if k > 0:
                    c = c + beta[j] * Y[k - 1, i, j]
                F[k, i, j] = c / C[j]


@inner
def rhs_vjp(cs, Y, cur, b0, t, dF, affine, dY, dI, F, Zc, work, node_sums, mat_sums, work_nn):
    """Adjoint of :func:`rhs` for the cotangent ``dF``: sets ``dY``; adds ``dI`` when ``affine``.

    With ``z_k = dF_k / C_k``: ``dC_k -= sum dF_k F_k / C_k``, ``dg_k -= sum z_k V_k``,
    ``dV_k = z_k A_k - g_k z_k``, ``dleak_k -= sum z_k``, ``dbeta_k += sum z_k V_{k-1}``,
    ``dV_{k-1} += beta_k z_k`` and ``dI += z_1``; the coupling gradient goes to the sums.

    Parameters
    ----------
    Y, dF, dY, F, Zc : ndarray, shape (K, rows, N)
        ``F`` and ``Zc`` are workspaces.
    dI : ndarray, shape (B, T_in, N)
        Gradient of the pass's currents; ``dI[b0 + i, t]`` receives ``z_1`` when ``affine``.
    node_sums, mat_sums : ndarray
        This slot's gradient sums (see :mod:`.codes`).
    """
    K, rows, N = Y.shape
    rhs(cs, Y, cur, b0, t, affine, F, work)
    for k in range(K):
        C, g, beta = cs.node[NODE_C, k], cs.node[NODE_G, k], cs.node[NODE_BETA, k]
        sC, sg, sleak, sbeta = node_sums[SUM_C, k], node_sums[SUM_G, k], node_sums[SUM_LEAK, k], \
            node_sums[SUM_BETA, k]
        z = Zc[k]
        for i in range(rows):
            for j in range(N):
                zij = dF[k, i, j] / C[j]
                z[i, j] = zij
                sC[j] -= dF[k, i, j] * F[k, i, j] / C[j]
                sg[j] -= zij * Y[k, i, j]
        apply_T(cs, k, z, work, False)
        for i in range(rows):
            for j in range(N):
                dY[k, i, j] = work[i, j] - g[j] * z[i, j]
        accumulate_grad(cs, k, z, Y[k], node_sums, mat_sums, True, work, work_nn)
        if affine:
            for i in range(rows):
                for j in range(N):
                    sleak[j] -= z[i, j]
            if k == 0:
                for i in range(rows):
                    for j in range(N):
                        dI[b0 + i, t, j] += z[i, j]
        if k > 0:
            for i in range(rows):
                for j in range(N):
                    sbeta[j] += z[i, j] * Y[k - 1, i, j]
                    dY[k - 1, i, j] += beta[j] * z[i, j]
