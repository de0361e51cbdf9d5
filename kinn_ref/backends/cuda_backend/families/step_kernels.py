"""Per-step kernels of the coupled layers (dense, kirchhoff, grid), node-parallel over ``(node, batch row)``.

The coupling term of a node is read from a product buffer computed by the tiled matrix product (dense,
kirchhoff: ``grid=False``) or evaluated as a stencil of the neighbouring nodes (``grid=True``). Backward
kernels accumulate the gradient sums of :mod:`.node_math.slots` per thread and add them to the block's slice of a
partial buffer (:func:`.node_math.slots.block_reducer`); the input-current cotangent ``dI`` is accumulated in place.
Twins, per node, of the reference's ``ExpEuler``/``Euler`` step (``linear_*``, with ``c1, c2 = E, p``),
``Implicit`` and ``Trapezoidal`` steps (``implicit_*``), ``dynamics.rhs``/``rhs_vjp`` (``rhs``, ``rhs_vjp``:
rk4 stages and the derivative readout) and the readouts.
"""
import math
from types import SimpleNamespace

import numpy as np

from ..node_math.slots import N_SLOTS, RHS, block_reducer
from ..node_math.stencil import stencil_functions
from ..node_math.updates import node_updates
from ..runtime import config
from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import kernel_cache

cuda = cuda_module()


@kernel_cache
def step_kernels(dtype, K, grid):
    """Kernels for ``K`` cells in ``dtype``; ``grid`` selects the stencil coupling term."""
    f = np.dtype(dtype).type
    zero = f(0.0)
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    TX, TY = config.NODE_BLOCK
    stencil = stencil_functions(dtype)
    neighbours, lap = stencil.neighbours, stencil.lap
    block_reduce = block_reducer(dtype, K)
    u_ = node_updates()
    linear_update, linear_cotangent = u_.linear_update, u_.linear_cotangent
    implicit_right_side, implicit_cotangent = u_.implicit_rhs, u_.implicit_cotangent
    trapezoidal_rhs, trapezoidal_cotangent = u_.trapezoidal_rhs, u_.trapezoidal_cotangent
    current, current_cotangent = u_.current, u_.current_cotangent

    def rows():
        """(n, first row, row stride) of this thread."""
        return (cuda.blockIdx.x * TX + cuda.threadIdx.x, cuda.blockIdx.y * TY + cuda.threadIdx.y,
                cuda.gridDim.y * TY)

    rows = nvvm_inlined()(rows)

    @cuda.jit
    def linear_fwd(Y, Ynew, P, I, t, c1, c2, leak, beta, s, geo, full, flag, step):
        """``V_k' = c1 V_k + c2 (term_k - leak_k + u_k)`` (eqs. 12-13)."""
        n, b, stride = rows()
        B, _, N = Y.shape
        if n >= N:
            return
        nbr = neighbours(n, geo)  # once per thread, outside the row loop: it divides
        while b < B:
            bad = -1
            for k in range(K):
                if grid:
                    term = s[k, nbr[0]] * lap(Y, c1, False, b, k, n, nbr, full)
                else:
                    term = P[b, k, n]
                u = I[b, t, n] if k == 0 else beta[k, n] * Y[b, k - 1, n]
                v = linear_update(Y[b, k, n], c1[k, n], c2[k, n], term, leak[k, n], u)
                Ynew[b, k, n] = v
                if bad < 0 and not math.isfinite(v):
                    bad = k
            if bad >= 0:
                cuda.atomic.min(flag, 0, np.int32(step * K + bad))
            b += stride

    @cuda.jit
    def linear_bwd(Y, dY1, dYo, Q, I, t, c1, c2, beta, s, geo, full, dI, partial):
        """Adjoint of :func:`linear_fwd` (eq. 28); ``Q`` = the coupling adjoint ``(c2 dY1) M`` (dense)."""
        n, b, stride = rows()
        B, _, N = Y.shape
        active = n < N
        acc = cuda.local.array((K, N_SLOTS), nb)
        for k in range(K):
            for j in range(N_SLOTS):
                acc[k, j] = zero
        nbr = neighbours(n, geo)  # once per thread, outside the row loop: it divides
        while active and b < B:
            for k in range(K):
                d1 = dY1[b, k, n]
                if grid:
                    adj = s[k, nbr[0]] * lap(dY1, c2, True, b, k, n, nbr, full)
                    acc[k, 3] += d1 * lap(Y, c2, False, b, k, n, nbr, full)
                else:
                    adj = Q[b, k, n]
                nxt = beta[k + 1, n] * c2[k + 1, n] * dY1[b, k + 1, n] if k + 1 < K else zero
                dYo[b, k, n] = linear_cotangent(d1, c1[k, n], adj, nxt)
                acc[k, 0] += d1
                acc[k, 1] += d1 * Y[b, k, n]
                if k == 0:
                    acc[k, 2] += d1 * I[b, t, n]
                    dI[b, t, n] += c2[0, n] * d1
                else:
                    acc[k, 2] += d1 * Y[b, k - 1, n]
            b += stride
        block_reduce(acc, partial, n, active)

    def implicit_kernels(trap):
        """The implicit (``trap`` False) or trapezoidal (``trap`` True) step kernels; ``trap`` is a constant of
        the kernel, so that each compiles only its own rule."""

        def implicit_rhs(Y, Ynew, k, I, t, c1, leak, beta, R, P, g, s, geo):
            """Right side of eq. 15 for cell ``k``, ``(C/dt) V_k - leak_k + u_k'``, into cell ``k`` of ``R``; with
            ``trap`` that of eq. 36, ``(2C/dt) V_k + C_k F_k(Y) - leak_k + u_k'`` (``c1 = 2C/dt``; the coupling
            term of ``C_k F_k`` from ``P`` or the stencil)."""
            n, b, stride = rows()
            B, _, N = Y.shape
            if n >= N:
                return
            nbr = neighbours(n, geo)
            while b < B:
                u = I[b, t, n] if k == 0 else beta[k, n] * Ynew[b, k - 1, n]
                v = Y[b, k, n]
                if trap:
                    if grid:
                        term = s[k, nbr[0]] * lap(Y, c1, False, b, k, n, nbr, True)
                    else:
                        term = P[b, k, n]
                    u0 = I[b, t, n] if k == 0 else beta[k, n] * Y[b, k - 1, n]
                    R[b, k, n] = trapezoidal_rhs(v, c1[k, n], g[k, n], term, leak[k, n], u0, u)
                else:
                    R[b, k, n] = implicit_right_side(v, c1[k, n], leak[k, n], u)
                b += stride

        def implicit_bwd(k, lam, Y, Ynew, dYo, dY1, t, c1, beta, geo, dI, partial, g, s):
            """Eq. 30 for cell ``k`` given cell ``k`` of ``lam`` solving ``lam M_k = dY1_k``; with ``trap`` eq. 37
            (the adjoint of the start-of-step current, ``lam_{k+1}`` read from ``lam``; the dense coupling's
            ``lam A`` is added by a product afterwards)."""
            n, b, stride = rows()
            B, _, N = Y.shape
            active = n < N
            acc = cuda.local.array((K, N_SLOTS), nb)
            for kk in range(K):
                for j in range(N_SLOTS):
                    acc[kk, j] = zero
            nbr = neighbours(n, geo)
            while active and b < B:
                lv = lam[b, k, n]
                acc[k, 0] += lv
                acc[k, 1] += lv * Y[b, k, n]
                acc[k, 2] += lv * Ynew[b, k, n]
                if k > 0:
                    acc[k, 3] += lv * (Ynew[b, k - 1, n] + Y[b, k - 1, n] if trap else Ynew[b, k - 1, n])
                    dY1[b, k - 1, n] += beta[k, n] * lv
                else:
                    dI[b, t, n] += lv + lv if trap else lv
                adj = zero
                if grid:
                    lp = lap(Ynew, c1, False, b, k, n, nbr, True)
                    if trap:
                        lp += lap(Y, c1, False, b, k, n, nbr, True)
                        adj = s[k, nbr[0]] * lap(lam, c1, False, b, k, n, nbr, True)  # L0 is symmetric
                    acc[k, 4] += lv * lp
                if trap:
                    nxt = beta[k + 1, n] * lam[b, k + 1, n] if k + 1 < K else zero
                    dYo[b, k, n] = trapezoidal_cotangent(lv, c1[k, n], g[k, n], adj, nxt)
                else:
                    dYo[b, k, n] = implicit_cotangent(lv, c1[k, n])
                b += stride
            block_reduce(acc, partial, n, active)

        prefix = "trapezoidal" if trap else "implicit"
        kernels = []
        for func, role in ((implicit_rhs, "rhs"), (implicit_bwd, "bwd")):
            func.__name__ = func.__qualname__ = f"{prefix}_{role}"  # each kernel its own name (ptx_check)
            kernels.append(cuda.jit(func))
        return kernels

    implicit_rhs, implicit_bwd = implicit_kernels(False)
    trapezoidal_rhs_kernel, trapezoidal_bwd = implicit_kernels(True)

    @cuda.jit
    def rhs(S, Y, P, I, t, accin, accout, out, y0c, ac, cc, mc, wc, use_acc, affine, C, g, leak, beta, s, geo):
        """``F = rhs(S)`` (eqs. 1-3); ``acc = mc acc + wc F``; ``out = y0c Y + ac F + cc acc`` (rk4, readout)."""
        n, b, stride = rows()
        B, _, N = S.shape
        if n >= N:
            return
        nbr = neighbours(n, geo)  # once per thread, outside the row loop: it divides
        while b < B:
            for k in range(K):
                if grid:
                    term = s[k, nbr[0]] * lap(S, C, False, b, k, n, nbr, True)
                else:
                    term = P[b, k, n]
                drive = (I[b, t, n] if affine else zero) if k == 0 else beta[k, n] * S[b, k - 1, n]
                F = current(term, g[k, n], S[b, k, n], leak[k, n], drive, affine) / C[k, n]
                a = zero
                if use_acc:
                    a = wc * F
                    if mc != zero:
                        a += mc * accin[b, k, n]
                    accout[b, k, n] = a
                v = ac * F + cc * a
                if y0c != zero:
                    v += y0c * Y[b, k, n]
                out[b, k, n] = v
            b += stride

    @cuda.jit
    def rhs_vjp(S, dF, alpha, Q, I, t, base, base_c, dYo, nxt, next_a, next_b, use_next, dYp, affine, C, Cinv, g,
                leak, beta, s, geo, dI, partial):
        """Adjoint of :func:`rhs` at ``S`` for the cotangent ``alpha dF`` (eq. 26): ``dYo = base_c base + g``,
        ``nxt = next_a dYp + next_b g`` (the next rk4 slope cotangent); ``Q`` = ``(alpha dF) diag(1/C) A``."""
        n, b, stride = rows()
        B, _, N = S.shape
        active = n < N
        acc = cuda.local.array((K, N_SLOTS), nb)
        for k in range(K):
            for j in range(N_SLOTS):
                acc[k, j] = zero
        nbr = neighbours(n, geo)  # once per thread, outside the row loop: it divides
        while active and b < B:
            for k in range(K):
                d = alpha * dF[b, k, n]
                Sk = S[b, k, n]
                drive = (I[b, t, n] if affine else zero) if k == 0 else beta[k, n] * S[b, k - 1, n]
                rest = current(zero, g[k, n], Sk, leak[k, n], drive, affine)
                if affine:
                    if k == 0:
                        dI[b, t, n] += d * Cinv[0, n]
                    acc[k, RHS + 2] += d
                if k > 0:
                    acc[k, RHS + 3] += d * S[b, k - 1, n]
                acc[k, RHS + 0] += d * rest
                acc[k, RHS + 1] += d * Sk
                if grid:
                    acc[k, RHS + 4] += d * lap(S, Cinv, False, b, k, n, nbr, True)
                    adj = alpha * s[k, nbr[0]] * lap(dF, Cinv, True, b, k, n, nbr, True)
                else:
                    adj = Q[b, k, n]
                nx = beta[k + 1, n] * alpha * dF[b, k + 1, n] * Cinv[k + 1, n] if k + 1 < K else zero
                gout = current_cotangent(d * Cinv[k, n], g[k, n], adj, nx)
                v = gout
                if base_c != zero:
                    v += base_c * base[b, k, n]
                dYo[b, k, n] = v
                if use_next:
                    nxt[b, k, n] = next_a * dYp[b, k, n] + next_b * gout
            b += stride
        block_reduce(acc, partial, n, active)

    @cuda.jit
    def readout_write(Y, y, t, code, block):
        """Eqs. 18-19 (code 0, 1) or one block of eq. 20 (code 2: ``V_K`` of ``Y`` into block ``block``)."""
        n, b, stride = rows()
        B, _, N = Y.shape
        if n >= N:
            return
        while b < B:
            if code == 1:
                for k in range(K):
                    y[b, t, k * N + n] = Y[b, k, n]
            else:
                y[b, t, block * N + n] = Y[b, K - 1, n]
            b += stride

    @cuda.jit
    def readout_add(dY, dy, t, code, block):
        """Adjoint of :func:`readout_write`: add the readout cotangent into ``dY``."""
        n, b, stride = rows()
        B, _, N = dY.shape
        if n >= N:
            return
        while b < B:
            if code == 1:
                for k in range(K):
                    dY[b, k, n] += dy[b, t, k * N + n]
            else:
                dY[b, K - 1, n] += dy[b, t, block * N + n]
            b += stride

    @cuda.jit
    def check(Y, flag, step):
        """Record ``step*K + k`` of the first non-finite cell of any node (atomic minimum)."""
        n, b, stride = rows()
        B, _, N = Y.shape
        if n >= N:
            return
        while b < B:
            for k in range(K):
                if not math.isfinite(Y[b, k, n]):
                    cuda.atomic.min(flag, 0, np.int32(step * K + k))
                    break
            b += stride

    return SimpleNamespace(linear_fwd=linear_fwd, linear_bwd=linear_bwd, implicit_rhs=implicit_rhs,
                           implicit_bwd=implicit_bwd, trapezoidal_rhs=trapezoidal_rhs_kernel,
                           trapezoidal_bwd=trapezoidal_bwd, rhs=rhs, rhs_vjp=rhs_vjp, readout_write=readout_write,
                           readout_add=readout_add, check=check)
