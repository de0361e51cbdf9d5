"""Per-node device functions of the uncoupled (``none``) layer, one node's cascade in registers.

Twins of the reference step functions restricted to ``A = 0``: each works on the ``K`` potentials of one
node (local arrays of length K) with that node's constants, applies the per-cell equations of
:mod:`.node_math.updates` with no coupling term, and accumulates the gradient sums of :mod:`.node_math.slots`
into ``acc`` (K x N_SLOTS).
"""
import math
from types import SimpleNamespace

import numpy as np

from ....integrators import INTEGRATORS
from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import kernel_cache
from .slots import RHS
from .updates import node_updates

cuda = cuda_module()

RK4_NODES, RK4_WEIGHTS = INTEGRATORS["rk4"].tableau  # the reference's tableau (eq. 16)


@kernel_cache
def cell_math(dtype, K):
    """Device functions for ``K`` cells in ``dtype`` (see the module docstring)."""
    f = np.dtype(dtype).type
    zero = f(0.0)
    nodes = tuple(f(c) for c in RK4_NODES)
    w = tuple(f(x) for x in RK4_WEIGHTS)
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    u_ = node_updates()
    linear_update, linear_cotangent = u_.linear_update, u_.linear_cotangent
    implicit_rhs, implicit_cotangent = u_.implicit_rhs, u_.implicit_cotangent
    trapezoidal_rhs, trapezoidal_cotangent = u_.trapezoidal_rhs, u_.trapezoidal_cotangent
    current, current_cotangent = u_.current, u_.current_cotangent

    @nvvm_inlined()
    def all_finite(V):
        ok = True
        for k in range(K):
            if not math.isfinite(V[k]):
                ok = False
        return ok

    @nvvm_inlined()
    def first_nonfinite(V):
        for k in range(K):
            if not math.isfinite(V[k]):
                return k
        return -1

    # ---- euler / expeuler: V_k <- E_k V_k + p_k (u_k - leak_k)  (eqs. 12-13 with A = 0)
    @nvvm_inlined()
    def linear_step(V, I, c1, c2, leak, beta):
        for kk in range(K):
            k = K - 1 - kk  # downwards, so the drive beta_k V_{k-1} uses the old V_{k-1}
            u = I if k == 0 else beta[k] * V[k - 1]
            V[k] = linear_update(V[k], c1[k], c2[k], zero, leak[k], u)

    @nvvm_inlined()
    def linear_step_vjp(V, I, dV, c1, c2, beta, acc):
        """``dV`` in: cotangent of the new state; out: of the old one ``V``. Returns ``dI`` (eq. 28)."""
        for k in range(K):
            d1 = dV[k]
            acc[k, 0] += d1
            acc[k, 1] += d1 * V[k]
            acc[k, 2] += d1 * (I if k == 0 else V[k - 1])
        dI = c2[0] * dV[0]
        for k in range(K):
            nxt = beta[k + 1] * c2[k + 1] * dV[k + 1] if k + 1 < K else zero
            dV[k] = linear_cotangent(dV[k], c1[k], zero, nxt)
        return dI

    # ---- implicit: (C_k/dt + g_k) V_k' = (C_k/dt) V_k - leak_k + u_k'  (eq. 15 with A = 0)
    @nvvm_inlined()
    def implicit_step(V, I, c1, c2, leak, beta):
        for k in range(K):
            u = I if k == 0 else beta[k] * V[k - 1]  # V[k-1] is already the new value
            V[k] = c2[k] * implicit_rhs(V[k], c1[k], leak[k], u)

    @nvvm_inlined()
    def implicit_step_vjp(V, Vn, I, dV, c1, c2, beta, acc):
        """``c1 = C/dt``, ``c2 = 1/(C/dt + g)``; ``Vn`` the new state. Returns ``dI`` (eq. 30)."""
        dI = zero
        for kk in range(K):
            k = K - 1 - kk
            lam = dV[k] * c2[k]
            dV[k] = implicit_cotangent(lam, c1[k])
            acc[k, 0] += lam
            acc[k, 1] += lam * V[k]
            acc[k, 2] += lam * Vn[k]
            if k > 0:
                acc[k, 3] += lam * Vn[k - 1]
                dV[k - 1] += beta[k] * lam
            else:
                dI = lam
        return dI

    # ---- trapezoidal: (2C_k/dt + g_k) V_k' = (2C_k/dt - g_k) V_k - 2 leak_k + u_k + u_k'  (eq. 36 with A = 0)
    @nvvm_inlined()
    def trapezoidal_step(V, I, c1, c2, g, leak, beta):
        """``c1 = 2C/dt``, ``c2 = 1/(2C/dt + g)``; the drive at both ends of the step (``I`` for cell 0)."""
        old = I  # u_k at the start of the step: beta_k times the old V_{k-1}
        for k in range(K):
            u0 = I if k == 0 else beta[k] * old
            u1 = I if k == 0 else beta[k] * V[k - 1]  # V[k-1] is already the new value
            old = V[k]
            V[k] = c2[k] * trapezoidal_rhs(V[k], c1[k], g[k], zero, leak[k], u0, u1)

    @nvvm_inlined()
    def trapezoidal_step_vjp(V, Vn, I, dV, c1, c2, g, beta, acc):
        """Adjoint of :func:`trapezoidal_step` (eq. 37 with A = 0): ``dV`` in: cotangent of ``Vn``; out: of
        ``V``. Slots: ``sum lam``, ``sum lam V``, ``sum lam V'``, ``sum lam (V_{k-1} + V'_{k-1})``. Returns
        ``dI``."""
        dI = zero
        lam_next = zero
        for kk in range(K):
            k = K - 1 - kk
            lam = dV[k] * c2[k]
            dV[k] = trapezoidal_cotangent(lam, c1[k], g[k], zero, beta[k + 1] * lam_next if k + 1 < K else zero)
            acc[k, 0] += lam
            acc[k, 1] += lam * V[k]
            acc[k, 2] += lam * Vn[k]
            if k > 0:
                acc[k, 3] += lam * (Vn[k - 1] + V[k - 1])
                dV[k - 1] += beta[k] * lam
            else:
                dI = lam + lam
            lam_next = lam
        return dI

    # ---- right-hand side F (eqs. 1-3 with A = 0) and its adjoint (eq. 26)
    @nvvm_inlined()
    def rhs(S, I, out, affine, C, g, leak, beta):
        for k in range(K):
            drive = (I if affine else zero) if k == 0 else beta[k] * S[k - 1]
            out[k] = current(zero, g[k], S[k], leak[k], drive, affine) / C[k]

    @nvvm_inlined()
    def rhs_vjp(S, I, dF, dS, affine, C, g, leak, beta, acc):
        """``dS = (dF/dS)^T dF`` (overwritten); gradient sums into ``acc``; returns ``dI``."""
        dI = zero
        for k in range(K):
            drive = (I if affine else zero) if k == 0 else beta[k] * S[k - 1]
            rest = current(zero, g[k], S[k], leak[k], drive, affine)
            d = dF[k]
            acc[k, RHS + 0] += d * rest
            acc[k, RHS + 1] += d * S[k]
            if affine:
                acc[k, RHS + 2] += d
            if k > 0:
                acc[k, RHS + 3] += d * S[k - 1]
        for k in range(K):
            z = dF[k] / C[k]
            nxt = beta[k + 1] * dF[k + 1] / C[k + 1] if k + 1 < K else zero
            dS[k] = current_cotangent(z, g[k], zero, nxt)
        if affine:
            dI = dF[0] / C[0]
        return dI

    # ---- rk4 (eq. 16) and its adjoint (eq. 31)
    @nvvm_inlined()
    def rk4_step(V, I, dt, C, g, leak, beta):
        S = cuda.local.array(K, nb)
        F = cuda.local.array(K, nb)
        tot = cuda.local.array(K, nb)
        for k in range(K):
            S[k] = V[k]
            tot[k] = zero
        for i in range(4):
            rhs(S, I, F, True, C, g, leak, beta)
            for k in range(K):
                tot[k] += w[i] * F[k]
                if i < 3:
                    S[k] = V[k] + (dt * nodes[i + 1]) * F[k]
        for k in range(K):
            V[k] = V[k] + dt * tot[k]

    @nvvm_inlined()
    def rk4_step_vjp(V, I, dt, dV, C, g, leak, beta, acc):
        """``dV`` in: cotangent of the new state; out: of ``V``. Returns ``dI``."""
        S = cuda.local.array((4, K), nb)
        F = cuda.local.array(K, nb)
        dF = cuda.local.array(K, nb)
        dS = cuda.local.array(K, nb)
        d1 = cuda.local.array(K, nb)
        for k in range(K):
            S[0, k] = V[k]
            d1[k] = dV[k]
        for i in range(3):
            rhs(S[i], I, F, True, C, g, leak, beta)
            for k in range(K):
                S[i + 1, k] = V[k] + (dt * nodes[i + 1]) * F[k]
        dI = zero
        for k in range(K):
            dF[k] = (dt * w[3]) * d1[k]
        for ii in range(4):
            i = 3 - ii
            dI += rhs_vjp(S[i], I, dF, dS, True, C, g, leak, beta, acc)
            for k in range(K):
                dV[k] += dS[k]
                if i > 0:
                    dF[k] = (dt * w[i - 1]) * d1[k] + (dt * nodes[i]) * dS[k]
        return dI

    # ---- derivative readout (eq. 20) and its adjoint (eq. 32)
    @nvvm_inlined()
    def derivatives(V, I, Z, C, g, leak, beta):
        """``Z[m]`` = ``Y^(m+1)``, m = 0..K-1 (K x K local array)."""
        rhs(V, I, Z[0], True, C, g, leak, beta)
        for m in range(1, K):
            rhs(Z[m - 1], I, Z[m], False, C, g, leak, beta)

    @nvvm_inlined()
    def derivatives_vjp(V, I, dblocks, dV, C, g, leak, beta, acc):
        """Add the cotangent of ``V`` to ``dV`` for readout cotangents ``dblocks`` (K+1); returns ``dI``."""
        Z = cuda.local.array((K, K), nb)
        dZ = cuda.local.array(K, nb)
        dS = cuda.local.array(K, nb)
        derivatives(V, I, Z, C, g, leak, beta)
        for k in range(K):
            dZ[k] = zero
        for mm in range(K - 1):
            m = K - 1 - mm
            dZ[K - 1] += dblocks[m + 1]
            rhs_vjp(Z[m - 1], I, dZ, dS, False, C, g, leak, beta, acc)
            for k in range(K):
                dZ[k] = dS[k]
        dZ[K - 1] += dblocks[1]
        dI = rhs_vjp(V, I, dZ, dS, True, C, g, leak, beta, acc)
        for k in range(K):
            dV[k] += dS[k]
        dV[K - 1] += dblocks[0]
        return dI

    return SimpleNamespace(all_finite=all_finite, first_nonfinite=first_nonfinite, linear_step=linear_step,
                           linear_step_vjp=linear_step_vjp, implicit_step=implicit_step,
                           implicit_step_vjp=implicit_step_vjp, trapezoidal_step=trapezoidal_step,
                           trapezoidal_step_vjp=trapezoidal_step_vjp, rhs=rhs, rhs_vjp=rhs_vjp, rk4_step=rk4_step,
                           rk4_step_vjp=rk4_step_vjp, derivatives=derivatives, derivatives_vjp=derivatives_vjp)
