"""A tiled, batched matrix product on the device: ``C[z] = alpha A[z] B[z] + beta C[z]``.

Operands are strided views of flat device arrays (:class:`Operand`), so one kernel serves every product
the backend needs: ``V A^T`` and ``Z A`` per cell (dense/kirchhoff couplings), ``Z^T V`` summed over the
batch (coupling gradients), the input projection and its adjoint, the implicit solves and the grid's
eigenbasis transforms. Each block computes a ``BM x BN`` tile from ``BK``-deep slices staged in shared memory
(the next slice is fetched into registers while the current one is used); each thread owns ``TM x TN``
outputs spaced so that shared-memory reads are conflict-free and stores coalesce. Long reductions are split
into chunks, each accumulated into its own slice of the output (fixed order, deterministic); the slices are
summed by :func:`sum_splits`.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import cublas
from ..runtime import config
from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import flat, kernel_cache, launch_1d, multiprocessors, scalar

cuda = cuda_module()


@dataclass(frozen=True)
class Operand:
    """A batch of matrices inside a flat device array: element ``(z, i, j)`` is
    ``data[offset + z*batch_stride + i*row_stride + j*col_stride]``.

    Attributes
    ----------
    data : device array, 1-D
    offset, batch_stride, row_stride, col_stride, rows, cols : int
    """

    data: object
    offset: int
    batch_stride: int
    row_stride: int
    col_stride: int
    rows: int
    cols: int

    @property
    def T(self):
        """The transposed view."""
        return Operand(self.data, self.offset, self.batch_stride, self.col_stride, self.row_stride, self.cols,
                       self.rows)


def matrices(a, offset=0, batch_stride=None, rows=None, cols=None, row_stride=None):
    """Operand over a contiguous device array viewed as a batch of row-major ``(rows, cols)`` matrices.

    Without arguments a 2-D array is one matrix and a 3-D array a batch over its first axis.
    """
    if rows is None:
        rows, cols = a.shape[a.ndim - 2], a.shape[a.ndim - 1]
    row_stride = cols if row_stride is None else row_stride
    if batch_stride is None:
        batch_stride = rows * row_stride if a.ndim <= 2 else a.shape[a.ndim - 2] * a.shape[a.ndim - 1]
    return Operand(flat(a), offset, batch_stride, row_stride, 1, rows, cols)


def narrow(itemsize, n_cols):
    """Whether a product with ``n_cols`` output columns runs on the narrow tiles (``GEMM_NARROW_TILE``)."""
    return n_cols <= config.GEMM_NARROW_TILE[itemsize][1]


@kernel_cache
def _gemm_kernel(dtype, a_k_contiguous, b_k_contiguous, narrow_tile=False):
    itemsize = np.dtype(dtype).itemsize
    BM, BN, BK, TM, TN = (config.GEMM_NARROW_TILE if narrow_tile else config.GEMM_TILE)[itemsize]
    if not 1 <= BK <= 8:
        raise ValueError(f"GEMM tiles need a depth BK of 1 to 8, got {BK}")
    NTX, NTY = BN // TN, BM // TM
    NT = NTX * NTY
    LA, LB = (BM * BK + NT - 1) // NT, (BK * BN + NT - 1) // NT
    typ = np.dtype(dtype).type
    zero = typ(0.0)
    nb_dtype = {4: np.float32, 8: np.float64}[itemsize]
    U = np.uint32

    @nvvm_inlined()
    def load_a(A, base, sAm, sAk, m0, kt, M, k1, e):
        if a_k_contiguous:
            kk = e % BK
            mm = e // BK
        else:
            mm = e % BM
            kk = e // BM
        gm = m0 + mm
        gk = kt + kk
        if mm < BM and gm < M and gk < k1:
            return A[base + gm * sAm + gk * sAk]
        return zero

    @nvvm_inlined()
    def load_b(B, base, sBk, sBn, n0, kt, N, k1, e):
        if b_k_contiguous:
            kk = e % BK
            nn = e // BK
        else:
            nn = e % BN
            kk = e // BN
        gn = n0 + nn
        gk = kt + kk
        if nn < BN and gn < N and gk < k1:
            return B[base + gk * sBk + gn * sBn]
        return zero

    @nvvm_inlined()
    def a_slot(e):
        if a_k_contiguous:
            return e % BK, e // BK
        return e // BM, e % BM

    @nvvm_inlined()
    def b_slot(e):
        if b_k_contiguous:
            return e % BK, e // BK
        return e // BN, e % BN

    @nvvm_inlined()
    def rank1(As, Bs, acol, bcol, af, bf, acc, kk):
        """``acc += As[kk, acol] (x) Bs[kk, bcol]``."""
        for i in range(TM):
            af[i] = As[kk, acol[i]]
        for j in range(TN):
            bf[j] = Bs[kk, bcol[j]]
        for i in range(TM):
            for j in range(TN):
                acc[i, j] += af[i] * bf[j]

    @cuda.jit
    def gemm(A, oA, sAz, sAm, sAk, B, oB, sBz, sBk, sBn, C, oC, sCz, sCs, sCm, sCn,
             M, N, KD, kchunk, nsplit, alpha, beta):
        As = cuda.shared.array((BK, BM), nb_dtype)
        Bs = cuda.shared.array((BK, BN), nb_dtype)
        acc = cuda.local.array((TM, TN), nb_dtype)
        ra = cuda.local.array(LA, nb_dtype)
        rb = cuda.local.array(LB, nb_dtype)
        af = cuda.local.array(TM, nb_dtype)
        bf = cuda.local.array(TN, nb_dtype)
        tid = cuda.threadIdx.x
        tx = tid % NTX
        ty = tid // NTX
        acol = cuda.local.array(TM, np.uint32)  # shared-tile columns of this thread's outputs: unsigned, so
        bcol = cuda.local.array(TN, np.uint32)  # numba adds no negative-index wrap to the inner loop's loads
        for i in range(TM):
            acol[i] = U(ty + i * NTY)
        for j in range(TN):
            bcol[j] = U(tx + j * NTX)
        z = cuda.blockIdx.z // nsplit
        s = cuda.blockIdx.z % nsplit
        m0 = cuda.blockIdx.y * BM
        n0 = cuda.blockIdx.x * BN
        k0 = s * kchunk
        k1 = min(KD, k0 + kchunk)
        baseA = oA + z * sAz
        baseB = oB + z * sBz
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = zero
        for i in range(LA):
            ra[i] = load_a(A, baseA, sAm, sAk, m0, k0, M, k1, tid + i * NT)
        for i in range(LB):
            rb[i] = load_b(B, baseB, sBk, sBn, n0, k0, N, k1, tid + i * NT)
        kt = k0
        while kt < k1:
            for i in range(LA):
                e = tid + i * NT
                if e < BM * BK:
                    kk, mm = a_slot(e)
                    As[kk, mm] = ra[i]
            for i in range(LB):
                e = tid + i * NT
                if e < BK * BN:
                    kk, nn = b_slot(e)
                    Bs[kk, nn] = rb[i]
            cuda.syncthreads()
            nxt = kt + BK
            if nxt < k1:
                for i in range(LA):
                    ra[i] = load_a(A, baseA, sAm, sAk, m0, nxt, M, k1, tid + i * NT)
                for i in range(LB):
                    rb[i] = load_b(B, baseB, sBk, sBn, n0, nxt, N, k1, tid + i * NT)
            # the slice's BK rank-1 updates written out (BK <= 8): constant rows, so every shared-memory read is
            # one instruction at a fixed offset from a per-thread base
            rank1(As, Bs, acol, bcol, af, bf, acc, U(0))
            if BK > 1:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(1))
            if BK > 2:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(2))
            if BK > 3:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(3))
            if BK > 4:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(4))
            if BK > 5:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(5))
            if BK > 6:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(6))
            if BK > 7:
                rank1(As, Bs, acol, bcol, af, bf, acc, U(7))
            cuda.syncthreads()
            kt = nxt
        baseC = oC + z * sCz + s * sCs
        for i in range(TM):
            gm = m0 + ty + i * NTY
            if gm < M:
                for j in range(TN):
                    gn = n0 + tx + j * NTX
                    if gn < N:
                        idx = baseC + gm * sCm + gn * sCn
                        if beta == zero:
                            C[idx] = alpha * acc[i, j]
                        else:
                            C[idx] = alpha * acc[i, j] + beta * C[idx]

    return gemm, (BM, BN, BK, NT)


def split_count(a, b, batch=1):
    """How many chunks to split the reduction of ``a @ b`` into so that the launch fills the device (1 on
    cuBLAS, which splits long reductions itself)."""
    if cublas.active():
        return 1
    BM, BN, BK, _ = _gemm_kernel(a.data.dtype.str, True, True, narrow(a.data.dtype.itemsize, b.cols))[1]
    tiles = math.ceil(a.rows / BM) * math.ceil(b.cols / BN) * batch
    want = math.ceil(2 * multiprocessors() / tiles)
    return max(1, min(want, a.cols // max(config.GEMM_SPLIT_MIN, BK)))


def gemm(a, b, c, alpha=1.0, beta=0.0, batch=1, nsplit=1, split_stride=0):
    """``c[z] = alpha a[z] @ b[z] + beta c[z]`` for ``z < batch``.

    Parameters
    ----------
    a, b, c : Operand
        ``(M, KD)``, ``(KD, N)`` and ``(M, N)`` matrices (batch strides may be 0 to share one matrix).
    alpha, beta : float
    batch : int
    nsplit : int
        Split the reduction into ``nsplit`` chunks; chunk ``s`` goes to ``c`` shifted by ``s*split_stride``
        (with ``beta=1`` each chunk accumulates into its own slice; see :func:`sum_splits`). On cuBLAS the
        whole reduction goes to the first slice.

    Returns
    -------
    int
        The number of chunks computed.
    """
    M, KD, N = a.rows, a.cols, b.cols
    if b.rows != KD or c.rows != M or c.cols != N:
        raise ValueError(f"gemm shapes do not agree: a {a.rows}x{a.cols}, b {b.rows}x{b.cols}, c {c.rows}x{c.cols}")
    if M == 0 or N == 0:
        return 1
    if cublas.active() and cublas.gemm(a, b, c, alpha, beta, batch):
        return 1
    dtype = c.data.dtype
    kern, (BM, BN, BK, NT) = _gemm_kernel(dtype.str, a.col_stride == 1, b.row_stride == 1,
                                          narrow(dtype.itemsize, N))
    kchunk = math.ceil(math.ceil(KD / nsplit) / BK) * BK if KD else BK
    nsplit = max(1, math.ceil(KD / kchunk)) if KD else 1
    grid = (math.ceil(N / BN), math.ceil(M / BM), batch * nsplit)
    kern[grid, NT](a.data, a.offset, a.batch_stride, a.row_stride, a.col_stride,
                   b.data, b.offset, b.batch_stride, b.row_stride, b.col_stride,
                   c.data, c.offset, c.batch_stride, split_stride, c.row_stride, c.col_stride,
                   M, N, KD, kchunk, nsplit, scalar(dtype, alpha), scalar(dtype, beta))
    return nsplit


@kernel_cache
def _sum_splits_kernel(dtype):
    zero = np.dtype(dtype).type(0.0)

    @cuda.jit
    def sum_splits(parts, out, nsplit, size):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < size:
            acc = zero
            for s in range(nsplit):
                acc += parts[s * size + i]
            out[i] = acc
            i += stride

    return sum_splits


def sum_splits(parts, out):
    """``out = parts.sum(axis=0)`` in order over the first axis (device arrays, ``out`` contiguous)."""
    launch_1d(_sum_splits_kernel(out.dtype.str), out.size, flat(parts), flat(out), parts.shape[0], out.size)
    return out
