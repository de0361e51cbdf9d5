"""Fused kernels of the uncoupled (``none``) layer: every step of every cell of one node in registers.

One thread owns node ``n`` and walks a stride of batch rows; per row it integrates the whole cascade over a
span of steps (forward), or recomputes the span from its first state and runs the adjoint back over it
(backward). The backward keeps ``CELL_CHECKPOINTS`` states of the span and the ``CELL_SEGMENT`` states of
the segment it is working on, so one launch covers up to ``CELL_SEGMENT * CELL_CHECKPOINTS`` steps without
storing any step to device memory. The input projection ``I = x W^T + b`` is computed in the kernel when
``D`` is small (``fused``; the kernels take ``W^T``, so that a warp's loads of it are coalesced) and read from
a buffer otherwise. Gradient sums (:mod:`slots`) stay in registers, are reduced over the block's rows in
shared memory in a fixed order and added to the block's slice of a partial buffer.
"""
from types import SimpleNamespace

import numpy as np

from ..integrators import UPDATE_CODES
from ..node_math.cascade import cell_math
from ..node_math.slots import N_SLOTS, block_reducer
from ..runtime import config
from ..runtime.compat import cuda_module, simulator_active, nvvm_inlined
from ..runtime.device import kernel_cache

cuda = cuda_module()
LINEAR, IMPLICIT, TRAPEZOIDAL = (UPDATE_CODES[kind] for kind in ("linear", "implicit", "trapezoidal"))



def launch_bounds():
    """``cuda.jit`` keywords of the fused kernels: at least ``CELL_MIN_BLOCKS`` blocks per multiprocessor."""
    if config.CELL_MIN_BLOCKS is None or simulator_active():
        return {}
    TX, TY = config.NODE_BLOCK
    return {"launch_bounds": (TX * TY, config.CELL_MIN_BLOCKS)}


@kernel_cache
def cell_parts(dtype, K, integrator, D):
    """Device functions the fused kernels share (one node's cascade; see :func:`cell_kernels` for ``D``):
    ``load_node``, ``load_weights``, ``current``, ``step``, ``step_vjp``, ``write_readout``, ``readout_vjp``,
    ``all_finite``, ``report_nonfinite``. ``integrator`` is an update kind of
    :func:`~kinn_ref.backends.cuda_backend.integrators.update_kind`."""
    code = UPDATE_CODES[integrator]
    m = cell_math(dtype, K)  # kernels may only reference device functions, not a namespace of them
    linear_step, linear_step_vjp = m.linear_step, m.linear_step_vjp
    implicit_step, implicit_step_vjp = m.implicit_step, m.implicit_step_vjp
    rk4_step, rk4_step_vjp = m.rk4_step, m.rk4_step_vjp
    trapezoidal_step, trapezoidal_step_vjp = m.trapezoidal_step, m.trapezoidal_step_vjp
    derivatives, derivatives_vjp = m.derivatives, m.derivatives_vjp
    f = np.dtype(dtype).type
    zero = f(0.0)
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    K1 = K + 1  # local array shapes must be compile-time literals

    @nvvm_inlined()
    def load_weights(Wt, bvec, n, Wn):
        """Node ``n``'s row of ``W`` into ``Wn`` (read from ``Wt = W^T``: coalesced); returns ``b[n]``."""
        for d in range(D):
            Wn[d] = Wt[d, n]
        return bvec[n] if D > 0 else zero

    @nvvm_inlined()
    def current(x, Wn, bn, Ibuf, b, t, n):
        if D > 0:
            s = bn
            for d in range(D):
                s += x[b, t, d] * Wn[d]
            return s
        return Ibuf[b, t, n]

    @nvvm_inlined()
    def step(V, I, dt, c1, c2, C, g, leak, beta):
        if code == LINEAR:
            linear_step(V, I, c1, c2, leak, beta)
        elif code == IMPLICIT:
            implicit_step(V, I, c1, c2, leak, beta)
        elif code == TRAPEZOIDAL:
            trapezoidal_step(V, I, c1, c2, g, leak, beta)
        else:
            rk4_step(V, I, dt, C, g, leak, beta)

    @nvvm_inlined()
    def load_node(n, c1_, c2_, C_, g_, leak_, beta_, c1, c2, C, g, leak, beta):
        for k in range(K):
            c1[k] = c1_[k, n]
            c2[k] = c2_[k, n]
            C[k] = C_[k, n]
            g[k] = g_[k, n]
            leak[k] = leak_[k, n]
            beta[k] = beta_[k, n]

    @nvvm_inlined()
    def write_readout(V, I, y, b, t, n, N, readout, C, g, leak, beta):
        if readout == 0:
            y[b, t, n] = V[K - 1]
        elif readout == 1:
            for k in range(K):
                y[b, t, k * N + n] = V[k]
        else:
            Z = cuda.local.array((K, K), nb)
            derivatives(V, I, Z, C, g, leak, beta)
            y[b, t, n] = V[K - 1]
            for j in range(K):
                y[b, t, (j + 1) * N + n] = Z[j, K - 1]

    @nvvm_inlined()
    def step_vjp(Vo, Vn, I, dt, dV, c1, c2, C, g, leak, beta, acc):
        if code == LINEAR:
            return linear_step_vjp(Vo, I, dV, c1, c2, beta, acc)
        elif code == IMPLICIT:
            return implicit_step_vjp(Vo, Vn, I, dV, c1, c2, beta, acc)
        elif code == TRAPEZOIDAL:
            return trapezoidal_step_vjp(Vo, Vn, I, dV, c1, c2, g, beta, acc)
        return rk4_step_vjp(Vo, I, dt, dV, C, g, leak, beta, acc)

    @nvvm_inlined()
    def readout_vjp(V, I, dy, b, t, n, N, readout, dV, C, g, leak, beta, acc):
        if readout == 0:
            dV[K - 1] += dy[b, t, n]
            return zero
        if readout == 1:
            for k in range(K):
                dV[k] += dy[b, t, k * N + n]
            return zero
        blocks = cuda.local.array(K1, nb)
        for j in range(K + 1):
            blocks[j] = dy[b, t, j * N + n]
        return derivatives_vjp(V, I, blocks, dV, C, g, leak, beta, acc)

    first_nonfinite = m.first_nonfinite

    @nvvm_inlined()
    def report_nonfinite(V, I, x, Wn, bn, Ibuf, seq, b, n, n0, n1, Ystart, has_start, dt, c1, c2, C, g, leak,
                         beta, flag):
        """Replay row ``b`` of a launch over steps ``n0..n1`` (rare: its end state was not finite) and record
        ``step*K + cell`` of its first non-finite state in ``flag`` (atomic minimum); ``I`` is the current of a
        static input."""
        for k in range(K):
            V[k] = Ystart[b, k, n] if has_start else zero
        for s in range(n0, n1):
            if seq:
                I = current(x, Wn, bn, Ibuf, b, s, n)
            step(V, I, dt, c1, c2, C, g, leak, beta)
            bad = first_nonfinite(V)
            if bad >= 0:
                cuda.atomic.min(flag, 0, np.int32(s * K + bad))
                break

    return SimpleNamespace(load_node=load_node, load_weights=load_weights, current=current, step=step,
                           step_vjp=step_vjp, write_readout=write_readout, readout_vjp=readout_vjp,
                           all_finite=m.all_finite, report_nonfinite=report_nonfinite)


@kernel_cache
def cell_kernels(dtype, K, integrator, D):
    """``(forward, backward)`` kernels for ``K`` cells, ``integrator`` a kernel kind of :data:`CODES`.

    ``D`` > 0: the kernels project ``D`` input features themselves (a thread keeps its node's row of ``W`` in
    registers); ``D = 0``: they read the projected current from a buffer.
    """
    p = cell_parts(dtype, K, integrator, D)
    load_node, load_weights, current, step = p.load_node, p.load_weights, p.current, p.step
    step_vjp, write_readout, readout_vjp = p.step_vjp, p.write_readout, p.readout_vjp
    all_finite, report_nonfinite = p.all_finite, p.report_nonfinite
    zero = np.dtype(dtype).type(0.0)
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    TX, TY = config.NODE_BLOCK
    SEG, NCK = config.CELL_SEGMENT, config.CELL_CHECKPOINTS
    SEG1 = SEG + 1  # local array shapes must be compile-time literals
    D1 = max(D, 1)
    block_reduce = block_reducer(dtype, K)
    bounds = launch_bounds()

    @cuda.jit(**bounds)
    def forward(x, Wt, bvec, Ibuf, seq, n0, n1, T, dt, Ystart, has_start, c1_, c2_, C_, g_, leak_, beta_,
                store, every, y, readout, ret_seq, flag):
        N = c1_.shape[1]
        n = cuda.blockIdx.x * TX + cuda.threadIdx.x
        if n >= N:
            return
        B = x.shape[0]
        c1 = cuda.local.array(K, nb)
        c2 = cuda.local.array(K, nb)
        C = cuda.local.array(K, nb)
        g = cuda.local.array(K, nb)
        leak = cuda.local.array(K, nb)
        beta = cuda.local.array(K, nb)
        V = cuda.local.array(K, nb)
        load_node(n, c1_, c2_, C_, g_, leak_, beta_, c1, c2, C, g, leak, beta)
        Wn = cuda.local.array(D1, nb)
        bn = load_weights(Wt, bvec, n, Wn)
        phase0 = n0 % every  # the store rule counts steps: no integer division inside the step loop
        b = cuda.blockIdx.y * TY + cuda.threadIdx.y
        while b < B:
            for k in range(K):
                V[k] = Ystart[b, k, n] if has_start else zero
            I = zero if seq else current(x, Wn, bn, Ibuf, b, 0, n)
            phase = phase0
            j = 0
            for s in range(n0, n1):
                if seq:
                    I = current(x, Wn, bn, Ibuf, b, s, n)
                step(V, I, dt, c1, c2, C, g, leak, beta)
                phase += 1
                if phase == every or s + 1 == n1:  # state s + 1 goes to slot spans.store_index(s + 1, n0, every)
                    for k in range(K):
                        store[j, b, k, n] = V[k]
                    j += 1
                    if phase == every:
                        phase = 0
                if ret_seq:
                    write_readout(V, I, y, b, s, n, N, readout, C, g, leak, beta)
                elif s + 1 == T:
                    write_readout(V, I, y, b, 0, n, N, readout, C, g, leak, beta)
            if not all_finite(V):  # rare: replay the row to find its first non-finite step
                I = zero if seq else current(x, Wn, bn, Ibuf, b, 0, n)
                report_nonfinite(V, I, x, Wn, bn, Ibuf, seq, b, n, n0, n1, Ystart, has_start, dt, c1, c2, C, g,
                                 leak, beta, flag)
            b += cuda.gridDim.y * TY

    @cuda.jit(**bounds)
    def backward(x, Wt, bvec, Ibuf, seq, n0, n1, T, dt, Ystart, has_start, dYend, has_dYend,
                 c1_, c2_, C_, g_, leak_, beta_, dy, readout, ret_seq, dYstart, write_dYstart, dI, accumulate_dI,
                 partial):
        N = c1_.shape[1]
        B = x.shape[0]
        n = cuda.blockIdx.x * TX + cuda.threadIdx.x
        active = n < N
        nn = n if active else 0
        c1 = cuda.local.array(K, nb)
        c2 = cuda.local.array(K, nb)
        C = cuda.local.array(K, nb)
        g = cuda.local.array(K, nb)
        leak = cuda.local.array(K, nb)
        beta = cuda.local.array(K, nb)
        V = cuda.local.array(K, nb)
        dV = cuda.local.array(K, nb)
        ck = cuda.local.array((NCK, K), nb)
        seg = cuda.local.array((SEG1, K), nb)
        acc = cuda.local.array((K, N_SLOTS), nb)
        load_node(nn, c1_, c2_, C_, g_, leak_, beta_, c1, c2, C, g, leak, beta)
        Wn = cuda.local.array(D1, nb)
        bn = load_weights(Wt, bvec, nn, Wn)
        for k in range(K):
            for j in range(N_SLOTS):
                acc[k, j] = zero
        L = n1 - n0
        nseg = (L + SEG - 1) // SEG
        b = cuda.blockIdx.y * TY + cuda.threadIdx.y
        while active and b < B:
            for k in range(K):
                V[k] = Ystart[b, k, n] if has_start else zero
                ck[0, k] = V[k]
                dV[k] = dYend[b, k, n] if has_dYend else zero
            I = zero if seq else current(x, Wn, bn, Ibuf, b, 0, n)
            for j in range(1, nseg):
                for i in range(SEG):
                    s = n0 + (j - 1) * SEG + i
                    if seq:
                        I = current(x, Wn, bn, Ibuf, b, s, n)
                    step(V, I, dt, c1, c2, C, g, leak, beta)
                for k in range(K):
                    ck[j, k] = V[k]
            dI_sum = zero
            for jj in range(nseg):
                j = nseg - 1 - jj
                s0 = n0 + j * SEG
                ln = min(SEG, n1 - s0)
                for k in range(K):
                    V[k] = ck[j, k]
                    seg[0, k] = V[k]
                for i in range(SEG):
                    if i < ln:
                        if seq:
                            I = current(x, Wn, bn, Ibuf, b, s0 + i, n)
                        step(V, I, dt, c1, c2, C, g, leak, beta)
                        for k in range(K):
                            seg[i + 1, k] = V[k]
                for ii in range(SEG):
                    i = SEG - 1 - ii
                    if i < ln:
                        s = s0 + i
                        if seq:
                            I = current(x, Wn, bn, Ibuf, b, s, n)
                        dIs = zero
                        if ret_seq:
                            dIs += readout_vjp(seg[i + 1], I, dy, b, s, n, N, readout, dV, C, g, leak, beta, acc)
                        elif s + 1 == T:
                            dIs += readout_vjp(seg[i + 1], I, dy, b, 0, n, N, readout, dV, C, g, leak, beta, acc)
                        dIs += step_vjp(seg[i], seg[i + 1], I, dt, dV, c1, c2, C, g, leak, beta, acc)
                        if seq:
                            dI[b, s, n] = dIs
                        else:
                            dI_sum += dIs
            if write_dYstart:
                for k in range(K):
                    dYstart[b, k, n] = dV[k]
            if not seq:
                dI[b, 0, n] = dI[b, 0, n] + dI_sum if accumulate_dI else dI_sum
            b += cuda.gridDim.y * TY
        block_reduce(acc, partial, n, active)

    return SimpleNamespace(forward=forward, backward=backward)


def span_capacity():
    """Most steps one backward launch of the fused kernels covers."""
    return config.CELL_SEGMENT * config.CELL_CHECKPOINTS


def fused_projection(in_features):
    """Whether the kernels compute ``I = x W^T + b`` themselves (cheap for few input features)."""
    return in_features <= config.FUSED_PROJECTION_MAX_D


def kernels_for(dtype, K, integrator, in_features):
    """:func:`cell_kernels` for a layer with ``in_features`` inputs: a namespace of ``forward``, ``backward``
    and ``fused`` (whether the kernels project the input themselves)."""
    fused = fused_projection(in_features)
    built = cell_kernels(dtype, K, integrator, in_features if fused else 0)
    return SimpleNamespace(forward=built.forward, backward=built.backward, fused=fused)
