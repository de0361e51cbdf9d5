"""Persistent kernels for one dense or kirchhoff cell of at most ``config.PERSISTENT_MAX_N`` nodes, euler or
expeuler: all steps in one launch, the coupling matrix and a batch tile's states in shared memory.

A block of ``G x G`` threads owns tiles of ``RB = G * PERSISTENT_ROWS`` batch rows in turn (a grid-stride over
tiles). Per step the forward computes ``P = V M^T`` from shared memory (each thread a ``rows x cols`` tile
of outputs, rows and columns spaced by G so that reads are broadcasts or conflict-free) and updates the
states in place: ``V <- E V + p (P - leak + I)`` (eqs. 12-13 with ``c1, c2 = E, p``). The backward walks
the stored states backwards and per step adds ``dV1^T V`` into a per-thread tile of the ``N x N`` sum
``X_int`` (in registers for the whole pass), forms ``dV1 (diag(p) M)`` from shared memory and updates the
cotangent ``dV <- E dV1 + dV1 diag(p) M`` (eq. 28). Per-block sums (slots, ``X_int``) are added to the
block's slice of partial buffers and summed in order afterwards.
"""
import math
from types import SimpleNamespace

import numpy as np

from ..linalg import gemm as mm
from ..node_math.slots import N_SLOTS
from ..node_math.updates import node_updates
from ..runtime import config
from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import allow_shared, empty, kernel_cache, multiprocessors, new_flag, zeros
from .spans import n_stores, spans, stored_states
from .step import _currents

cuda = cuda_module()


def _geometry(N):
    G, RPT = config.PERSISTENT_GROUPS, config.PERSISTENT_ROWS
    CPT = math.ceil(N / G)
    return G, RPT, G * RPT, CPT, G * CPT


def shared_bytes(N, itemsize):
    """Dynamic shared memory of the (forward, backward) kernels."""
    G, RPT, RB, CPT, NP = _geometry(N)
    return (N * NP + RB * NP) * itemsize, (N * NP + 3 * RB * NP) * itemsize


def default_interval(T):
    """The persistent backward reads every state."""
    return 1


@kernel_cache
def _kernels(dtype, N):
    G, RPT, RB, CPT, NP = _geometry(N)
    NT = G * G
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    dyn_dtype = np.dtype(dtype)  # a dtype instance: the simulator sizes dynamic shared memory from it
    zero = np.dtype(dtype).type(0.0)
    linear_update, linear_cotangent = node_updates().linear_update, node_updates().linear_cotangent
    BIG = np.int32(2 ** 31 - 1)
    U = np.uint32  # shared-memory offsets of the inner loops: unsigned, so numba adds no negative-index wrap

    @nvvm_inlined()
    def spaced(first, scale, out):
        """``out[i] = (first + G*i) * scale``: a thread's rows (scale NP) or columns (scale 1) in a shared tile."""
        for i in range(out.shape[0]):
            out[i] = U((first + G * i) * scale)

    @cuda.jit
    def forward(M, V0, has_V0, I, seq, T, n0, n1, c1, c2, leak, store, every, y, ret_seq, flag, ntiles):
        dyn = cuda.shared.array(0, dyn_dtype)
        Ms = dyn[0:N * NP]
        Vs = dyn[N * NP:N * NP + RB * NP]
        tid = cuda.threadIdx.x
        rg = tid // G
        cg = tid % G
        B = I.shape[0]
        for e in range(tid, N * NP, NT):  # Ms[j, i] = M[i, j], zero-padded columns
            j = e // NP
            i = e % NP
            Ms[e] = M[0, i, j] if i < N else zero
        E = cuda.local.array(CPT, nb)
        p = cuda.local.array(CPT, nb)
        lk = cuda.local.array(CPT, nb)
        Ist = cuda.local.array((RPT, CPT), nb)
        acc = cuda.local.array((RPT, CPT), nb)
        a = cuda.local.array(RPT, nb)
        m = cuda.local.array(CPT, nb)
        arow = cuda.local.array(RPT, np.uint32)
        mcol = cuda.local.array(CPT, np.uint32)
        spaced(rg, NP, arow)
        spaced(cg, 1, mcol)
        for jj in range(CPT):
            c = cg + G * jj
            E[jj] = c1[0, c] if c < N else zero
            p[jj] = c2[0, c] if c < N else zero
            lk[jj] = leak[0, c] if c < N else zero
        bad = BIG
        tile = cuda.blockIdx.x
        while tile < ntiles:
            b0 = tile * RB
            cuda.syncthreads()
            for e in range(tid, RB * NP, NT):
                b = b0 + e // NP
                c = e % NP
                Vs[e] = V0[b, 0, c] if has_V0 and b < B and c < N else zero
            for ii in range(RPT):
                b = b0 + rg + G * ii
                for jj in range(CPT):
                    c = cg + G * jj
                    Ist[ii, jj] = I[b, 0, c] if (not seq) and b < B and c < N else zero
            cuda.syncthreads()
            for s in range(n0, n1):
                for ii in range(RPT):
                    for jj in range(CPT):
                        acc[ii, jj] = zero
                for j in range(N):
                    uj = U(j)
                    for ii in range(RPT):
                        a[ii] = Vs[arow[ii] + uj]
                    uj = U(j * NP)
                    for jj in range(CPT):
                        m[jj] = Ms[uj + mcol[jj]]
                    for ii in range(RPT):
                        for jj in range(CPT):
                            acc[ii, jj] += a[ii] * m[jj]
                cuda.syncthreads()
                due = (s + 1) % every == 0 or s + 1 == n1  # twin of spans.store_index
                jst = (s + 1) // every - n0 // every - (1 if (s + 1) % every == 0 else 0)
                for ii in range(RPT):
                    r = rg + G * ii
                    b = b0 + r
                    for jj in range(CPT):
                        c = cg + G * jj
                        if b < B and c < N:
                            u = I[b, s, c] if seq else Ist[ii, jj]
                            vn = linear_update(Vs[r * NP + c], E[jj], p[jj], acc[ii, jj], lk[jj], u)
                            Vs[r * NP + c] = vn
                            if due:
                                store[jst, b, 0, c] = vn
                            if ret_seq:
                                y[b, s, c] = vn
                            elif s + 1 == T:
                                y[b, 0, c] = vn
                            if s < bad and not math.isfinite(vn):
                                bad = s
                cuda.syncthreads()
            tile += cuda.gridDim.x
        if bad != BIG:
            cuda.atomic.min(flag, 0, bad)

    @cuda.jit
    def backward(Mp, Ystart, has_start, hist, dYend, has_dYend, I, seq, T, n0, n1, c1, c2, dy, ret_seq, dYstart,
                 write_dYstart, dI, accumulate_dI, partial, Xpart, ntiles):
        dyn = cuda.shared.array(0, dyn_dtype)
        Ms = dyn[0:N * NP]
        Ds = dyn[N * NP:N * NP + RB * NP]
        Vs = dyn[N * NP + RB * NP:N * NP + 2 * RB * NP]
        DIs = dyn[N * NP + 2 * RB * NP:N * NP + 3 * RB * NP]
        tid = cuda.threadIdx.x
        rg = tid // G
        cg = tid % G
        B = I.shape[0]
        for e in range(tid, N * NP, NT):  # Ms[i, j] = (diag(p) M)[i, j], zero-padded columns
            i = e // NP
            j = e % NP
            Ms[e] = Mp[0, i, j] if j < N else zero
        E = cuda.local.array(CPT, nb)
        p = cuda.local.array(CPT, nb)
        X = cuda.local.array((CPT, CPT), nb)
        sl = cuda.local.array((3, CPT), nb)
        acc = cuda.local.array((RPT, CPT), nb)
        a = cuda.local.array(RPT, nb)
        m = cuda.local.array(CPT, nb)
        xa = cuda.local.array(CPT, nb)
        arow = cuda.local.array(RPT, np.uint32)
        mcol = cuda.local.array(CPT, np.uint32)
        spaced(rg, NP, arow)
        spaced(cg, 1, mcol)
        xcol = cuda.local.array(CPT, np.uint32)
        spaced(rg, 1, xcol)
        for jj in range(CPT):
            c = cg + G * jj
            E[jj] = c1[0, c] if c < N else zero
            p[jj] = c2[0, c] if c < N else zero
            for q in range(3):
                sl[q, jj] = zero
            for ii in range(CPT):
                X[ii, jj] = zero
        tile = cuda.blockIdx.x
        while tile < ntiles:
            b0 = tile * RB
            cuda.syncthreads()
            for e in range(tid, RB * NP, NT):
                b = b0 + e // NP
                c = e % NP
                Ds[e] = dYend[b, 0, c] if has_dYend and b < B and c < N else zero
                DIs[e] = zero
            for ss in range(n1 - n0):
                s = n1 - 1 - ss
                cuda.syncthreads()
                for e in range(tid, RB * NP, NT):
                    b = b0 + e // NP
                    c = e % NP
                    v = zero
                    if b < B and c < N:
                        if s > n0:
                            v = hist[s - n0 - 1, b, 0, c]
                        elif has_start:
                            v = Ystart[b, 0, c]
                    Vs[e] = v
                cuda.syncthreads()
                for ii in range(RPT):
                    r = rg + G * ii
                    b = b0 + r
                    for jj in range(CPT):
                        c = cg + G * jj
                        if b < B and c < N:
                            d1 = Ds[r * NP + c]
                            if ret_seq:
                                d1 += dy[b, s, c]
                            elif s + 1 == T:
                                d1 += dy[b, 0, c]
                            Ds[r * NP + c] = d1
                            u = I[b, s if seq else 0, c]
                            sl[0, jj] += d1
                            sl[1, jj] += d1 * Vs[r * NP + c]
                            sl[2, jj] += d1 * u
                            if seq:
                                dI[b, s, c] = p[jj] * d1
                            else:
                                DIs[r * NP + c] += p[jj] * d1
                cuda.syncthreads()
                for r in range(RB):  # X += Ds^T Vs over the tile
                    ur = U(r * NP)
                    for ii in range(CPT):
                        xa[ii] = Ds[ur + xcol[ii]]
                    for jj in range(CPT):
                        m[jj] = Vs[ur + mcol[jj]]
                    for ii in range(CPT):
                        for jj in range(CPT):
                            X[ii, jj] += xa[ii] * m[jj]
                for ii in range(RPT):
                    for jj in range(CPT):
                        acc[ii, jj] = zero
                for i in range(N):  # Ds (diag(p) M)
                    ui = U(i)
                    for ii in range(RPT):
                        a[ii] = Ds[arow[ii] + ui]
                    ui = U(i * NP)
                    for jj in range(CPT):
                        m[jj] = Ms[ui + mcol[jj]]
                    for ii in range(RPT):
                        for jj in range(CPT):
                            acc[ii, jj] += a[ii] * m[jj]
                cuda.syncthreads()
                for ii in range(RPT):
                    r = rg + G * ii
                    for jj in range(CPT):
                        c = cg + G * jj
                        if c < N:
                            Ds[r * NP + c] = linear_cotangent(Ds[r * NP + c], E[jj], acc[ii, jj], zero)
            cuda.syncthreads()
            for ii in range(RPT):
                r = rg + G * ii
                b = b0 + r
                for jj in range(CPT):
                    c = cg + G * jj
                    if b < B and c < N:
                        if write_dYstart:
                            dYstart[b, 0, c] = Ds[r * NP + c]
                        if not seq:
                            dI[b, 0, c] = (dI[b, 0, c] + DIs[r * NP + c]) if accumulate_dI else DIs[r * NP + c]
            tile += cuda.gridDim.x
        cuda.syncthreads()
        for q in range(3):  # slots: sum over the row groups in order
            for jj in range(CPT):
                Vs[rg * NP + cg + G * jj] = sl[q, jj]
            cuda.syncthreads()
            if rg == 0:
                for jj in range(CPT):
                    c = cg + G * jj
                    if c < N:
                        tot = zero
                        for g_ in range(G):
                            tot += Vs[g_ * NP + c]
                        partial[cuda.blockIdx.x, 0, q, c] += tot
            cuda.syncthreads()
        for ii in range(CPT):
            i = rg + G * ii
            for jj in range(CPT):
                j = cg + G * jj
                if i < N and j < N:
                    Xpart[cuda.blockIdx.x, 0, i, j] += X[ii, jj]

    return SimpleNamespace(forward=forward, backward=backward)


def _launch_blocks(ntiles, per_sm):
    return max(1, min(ntiles, per_sm * multiprocessors()))


def forward(spec, dp, circuit, consts, coupling, x, V0, T, sequence, every, flag, explicit_interval=False):
    """All steps in one launch; returns ``(y (B, T or 1, N), states, aux)``. Every ``every``-th state is kept
    whether or not ``every`` was asked for (``explicit_interval``)."""
    dtype = dp["W"].dtype
    B, N = x.shape[0], spec.total_nodes
    I = _currents(spec, dp, x, sequence, T)
    fwd = _kernels(dtype.str, N).forward
    G, RPT, RB, CPT, NP = _geometry(N)
    ntiles = math.ceil(B / RB)
    y = empty((B, T if spec.return_sequences else 1, N), dtype)
    store = empty((n_stores(0, T, every), B, 1, N), dtype)
    mode = "full" if spec.integrator == "euler" else "off"
    _run_forward(fwd, coupling.matrix(mode), V0, I, sequence, T, 0, T, consts, circuit, store, every, y,
                 spec.return_sequences, flag, ntiles, N, dtype)
    states = {0: V0}
    states.update(stored_states(store, 0, T, every))
    return y, states, SimpleNamespace(currents=I, store=store)


def _run_forward(fwd, M, V0, I, seq, T, n0, n1, consts, circuit, store, every, y, ret_seq, flag, ntiles, N, dtype):
    G = config.PERSISTENT_GROUPS
    dummy = empty((1, 1, 1), dtype)
    args = (M, V0 if V0 is not None else dummy, V0 is not None, I, seq, T, n0, n1, consts.c1, consts.c2,
            circuit.leak, store, every, y, ret_seq, flag, ntiles)
    nbytes = shared_bytes(N, np.dtype(dtype).itemsize)[0]
    allow_shared(fwd, args, nbytes)
    fwd[_launch_blocks(ntiles, 2), G * G, 0, nbytes](*args)


def backward(spec, tape, dy3):
    """Adjoint of :func:`forward`: ``(sums (1, N_SLOTS, N), dI (B, Tin, N), dV0 or None)``.

    One launch per span of ``PERSISTENT_SPAN`` steps (aligned, see :mod:`.families.spans`), latest first; a span's
    states come from the tape or are recomputed from the last kept state before it.
    """
    dtype = tape.params["W"].dtype
    B, N, T = tape.x.shape[0], spec.total_nodes, tape.n_steps
    k_ = _kernels(dtype.str, N)
    fwd, bwd = k_.forward, k_.backward
    G, RPT, RB, CPT, NP = _geometry(N)
    ntiles = math.ceil(B / RB)
    blocks = _launch_blocks(ntiles, 1)
    coupling, consts, circuit = tape.coupling, tape.consts, tape.circuit
    mode = "full" if spec.integrator == "euler" else "off"
    M, Mp = coupling.matrix(mode), coupling.scaled("Mp", consts.c2, mode)
    I = tape.aux.currents
    dI = empty((B, T if tape.sequence else 1, N), dtype)
    dY = empty((B, 1, N), dtype)
    partial = zeros((blocks, 1, N_SLOTS, N), dtype)
    Xpart = zeros((blocks, 1, N, N), dtype)
    dummy3, dummy4 = empty((1, 1, 1), dtype), empty((1, 1, 1, 1), dtype)
    nbytes = shared_bytes(N, np.dtype(dtype).itemsize)[1]

    def recompute(Ystart, n0, n1, every):
        out = empty((n_stores(n0, n1, every), B, 1, N), dtype)
        _run_forward(fwd, M, Ystart, I, tape.sequence, -1, n0, n1, consts, circuit, out, every, dummy3, False,
                     new_flag(), ntiles, N, dtype)
        return out

    first = True
    for n0, n1 in reversed(spans(T, config.PERSISTENT_SPAN)):
        if n0 in tape.states:
            start = tape.states[n0]
        else:
            source = max(k for k in tape.states if k <= n0)
            start = recompute(tape.states[source], source, n0, n0 + 1)[0]  # stores the last state only
        if tape.interval == 1:
            hist = tape.aux.store[n0:n1]
        else:
            hist = recompute(start, n0, n1, 1)
        args = (Mp, start if start is not None else dummy3, start is not None, hist if n1 > n0 + 1 else dummy4, dY,
                not first, I, tape.sequence, T, n0, n1, consts.c1, consts.c2, dy3, spec.return_sequences, dY,
                n0 > 0 or tape.has_V0, dI, not first, partial, Xpart, ntiles)
        allow_shared(bwd, args, nbytes)
        bwd[blocks, G * G, 0, nbytes](*args)
        first = False
    coupling.set_integrator_sums(Xpart)
    sums = mm.sum_splits(partial, empty((1, N_SLOTS, N), dtype))
    return sums, dI, (dY if tape.has_V0 else None)
