"""Fused kernels of the uncoupled (``none``) layer for a static input and few steps, built for one ``T``.

A static input drives every step with the same current, so one launch of the forward kernel needs nothing but
the start state and ``x``, and one launch of the backward kernel covers all ``T`` steps. Both are built for a
given ``T`` (at most ``config.CELL_STATIC_MAX_T``): the forward keeps no state at all (the backward starts
again from the start state), and the backward's source is generated with every step written out, so that
the checkpoints (every ``config.CELL_STATIC_SEGMENT`` steps) and the states of the segment being
differentiated are separate local arrays indexed by constants, which the compiler keeps in registers. The
kernels of :mod:`.families.cell_kernels` index such arrays by the loop counter and keep them in local memory.

Thread layout, the node's constants and row of ``W`` in registers, the in-kernel projection and the
block-ordered reduction of the gradient sums are those of :mod:`.families.cell_kernels`, whose device functions
(:func:`~.families.cell_kernels.cell_parts`) these kernels call. The backward also sums the projection's weight and
bias gradients over its rows (it holds ``dI`` and ``x`` of each row), which leaves only ``dx = dI W`` to a
matrix product.
"""
from types import SimpleNamespace
import numpy as np

from ..node_math.slots import N_SLOTS, block_reducer
from ..runtime import config
from ..runtime.compat import cuda_module
from ..runtime.device import kernel_cache
from .cell_kernels import cell_parts, launch_bounds

cuda = cuda_module()


def segments(T, seg):
    """``[(first_step, length), ...]`` of the backward's segments, in forward order."""
    return [(s, min(seg, T - s)) for s in range(0, T, seg)]


def backward_source(T, seg, ret_seq):
    """Source of the backward kernel's per-row body (see the module docstring), indented for the kernel."""
    parts = segments(T, seg)
    longest = max(length for _, length in parts)
    lines = []
    emit = lines.append
    for j in range(len(parts)):
        emit(f"CK{j} = cuda.local.array(K, nb)")
    for i in range(longest + 1):
        emit(f"S{i} = cuda.local.array(K, nb)")
    emit("while active and b < B:")
    body = []
    put = body.append
    put("I = current(x, Wn, bn, x, b, 0, n)")
    put("for k in range(K):")
    put("    CK0[k] = Ystart[b, k, n] if has_start else zero")
    put("    dV[k] = zero")
    for j in range(1, len(parts)):  # checkpoints at the first step of every segment
        put("for k in range(K):")
        put(f"    CK{j}[k] = CK{j - 1}[k]")
        put(f"for i in range({parts[j - 1][1]}):")
        put(f"    step(CK{j}, I, dt, c1, c2, C, g, leak, beta)")
    put("dIsum = zero")
    for j in reversed(range(len(parts))):
        first, length = parts[j]
        put("for k in range(K):")
        put(f"    S0[k] = CK{j}[k]")
        for i in range(1, length + 1):  # the segment's states, recomputed
            put("for k in range(K):")
            put(f"    S{i}[k] = S{i - 1}[k]")
            put(f"step(S{i}, I, dt, c1, c2, C, g, leak, beta)")
        for i in reversed(range(length)):  # and differentiated, latest step first
            s = first + i
            if ret_seq:
                put(f"dIsum += readout_vjp(S{i + 1}, I, dy, b, {s}, n, N, READOUT, dV, C, g, leak, beta, acc)")
            elif s + 1 == T:
                put(f"dIsum += readout_vjp(S{i + 1}, I, dy, b, 0, n, N, READOUT, dV, C, g, leak, beta, acc)")
            put(f"dIsum += step_vjp(S{i}, S{i + 1}, I, dt, dV, c1, c2, C, g, leak, beta, acc)")
    put("if write_dYstart:")
    put("    for k in range(K):")
    put("        dYstart[b, k, n] = dV[k]")
    put("dI[b, 0, n] = dIsum")
    put("proj[0, D] += dIsum")
    put("for d in range(D):")
    put("    proj[0, d] += dIsum * x[b, 0, d]")
    put("b += cuda.gridDim.y * TY")
    lines.extend("    " + line for line in body)
    return "\n".join("    " + line for line in lines)


BACKWARD_TEMPLATE = '''
def backward(x, Wt, bvec, dt, Ystart, has_start, c1_, c2_, C_, g_, leak_, beta_, dy, dYstart, write_dYstart,
             dI, partial, pproj):
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
    dV = cuda.local.array(K, nb)
    acc = cuda.local.array((K, N_SLOTS), nb)
    proj = cuda.local.array((1, D1), nb)
    load_node(nn, c1_, c2_, C_, g_, leak_, beta_, c1, c2, C, g, leak, beta)
    Wn = cuda.local.array(D, nb)
    bn = load_weights(Wt, bvec, nn, Wn)
    for k in range(K):
        for j in range(N_SLOTS):
            acc[k, j] = zero
    for d in range(D1):
        proj[0, d] = zero
    b = cuda.blockIdx.y * TY + cuda.threadIdx.y
{body}
    block_reduce(acc, partial, n, active)
    proj_reduce(proj, pproj, n, active)
'''


@kernel_cache
def static_kernels(dtype, K, integrator, D, T, readout, ret_seq):
    """``(forward, backward)`` for ``K`` cells, ``D`` in-kernel input features (> 0), ``T`` steps of one static
    input, readout code ``readout`` (0 last, 1 cells, 2 derivatives) and ``ret_seq`` (return_sequences).

    ``forward(x, Wt, bvec, dt, Ystart, has_start, c1, c2, C, g, leak, beta, y, flag)``;
    ``backward(x, Wt, bvec, dt, Ystart, has_start, c1, c2, C, g, leak, beta, dy, dYstart, write_dYstart, dI,
    partial, pproj)`` with ``x`` (B, 1, D), ``dI`` (B, 1, N), ``partial`` as in :mod:`.families.cell_kernels` and
    ``pproj`` (blocks along the batch, 1, D + 1, N): the projection's gradient sums per block, ``dW[n, d]``
    at ``[., 0, d, n]`` and ``db[n]`` at ``[., 0, D, n]``.
    """
    if D < 1:
        raise ValueError(f"D must be >= 1 (the kernels project the input themselves), got {D}")
    p = cell_parts(dtype, K, integrator, D)
    load_node, load_weights, current, step = p.load_node, p.load_weights, p.current, p.step
    step_vjp, write_readout, readout_vjp = p.step_vjp, p.write_readout, p.readout_vjp
    all_finite, report_nonfinite = p.all_finite, p.report_nonfinite
    zero = np.dtype(dtype).type(0.0)
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    TX, TY = config.NODE_BLOCK
    bounds = launch_bounds()

    @cuda.jit(**bounds)
    def forward(x, Wt, bvec, dt, Ystart, has_start, c1_, c2_, C_, g_, leak_, beta_, y, flag):
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
        Wn = cuda.local.array(D, nb)
        bn = load_weights(Wt, bvec, n, Wn)
        b = cuda.blockIdx.y * TY + cuda.threadIdx.y
        while b < B:
            for k in range(K):
                V[k] = Ystart[b, k, n] if has_start else zero
            I = current(x, Wn, bn, x, b, 0, n)
            for s in range(T):
                step(V, I, dt, c1, c2, C, g, leak, beta)
                if ret_seq:
                    write_readout(V, I, y, b, s, n, N, readout, C, g, leak, beta)
            if not ret_seq:
                write_readout(V, I, y, b, 0, n, N, readout, C, g, leak, beta)
            if not all_finite(V):  # rare: replay the row to find its first non-finite step
                report_nonfinite(V, I, x, Wn, bn, x, False, b, n, 0, T, Ystart, has_start, dt, c1, c2, C, g,
                                 leak, beta, flag)
            b += cuda.gridDim.y * TY

    # The written-out body calls step, step_vjp and readout_vjp once per step: they are inlined by NVVM, not by
    # numba, whose IR inlining re-ran its liveness analysis over the whole growing kernel at every call site
    # (about 70 s for T = 32).
    namespace = dict(cuda=cuda, K=K, D=D, D1=D + 1, T=T, TX=TX, TY=TY, N_SLOTS=N_SLOTS, READOUT=readout, nb=nb,
                     zero=zero, load_node=load_node, load_weights=load_weights, current=current, step=step,
                     step_vjp=step_vjp, readout_vjp=readout_vjp, block_reduce=block_reducer(dtype, K),
                     proj_reduce=block_reducer(dtype, 1, D + 1))
    source = BACKWARD_TEMPLATE.format(body=backward_source(T, config.CELL_STATIC_SEGMENT, ret_seq))
    exec(compile(source, f"<cell_static backward T={T} K={K}>", "exec"), namespace)
    backward = cuda.jit(**bounds)(namespace["backward"])
    return SimpleNamespace(forward=forward, backward=backward)
