"""The input projection ``I = x W^T + b`` (eq. 3) and its adjoint (eq. 33) on the device.

Rows are the flattened leading axes of ``x`` (batch, steps of a sequence, grid points) and columns the
channels ``H``: node ``p*H + h`` of a grid is column ``h`` of row ``(b, t, p)``.

With few input features (``D <= PROJECTION_THIN_MAX_D``, e.g. a grid's per-point features) the products are
memory-bound and badly shaped for the tiled product (depth ``D``, or ``D`` output columns): they run on the
*thin* kernels instead, which walk row tiles of ``RT`` rows staged in shared memory. The forward writes
``I`` once; the adjoint reads ``dI`` once for ``dx``, ``dW`` and ``db`` together (per-block sums, then
:func:`.linalg.gemm.sum_splits` in block order: deterministic).
"""
from types import SimpleNamespace
import math

import numpy as np

from ..runtime import config
from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import empty, fill, kernel_cache, launch_1d, multiprocessors, zeros
from . import gemm as mm

cuda = cuda_module()


@kernel_cache
def _bias_rows(dtype):
    @cuda.jit
    def bias_rows(bvec, out):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        R, H = out.shape
        while i < R * H:
            out[i // H, i % H] = bvec[i % H]
            i += stride

    return bias_rows


@kernel_cache
def _thin_kernels(dtype, D):
    """Thin kernels for ``D`` input features. Columns are done in chunks of ``HC`` channels (the outer loop, so
    that every per-thread array has constant indices and stays in registers)."""
    RT, HC = config.PROJECTION_TILE[np.dtype(dtype).itemsize]
    G = RT // HC  # row groups: thread t owns column t % HC of rows t // HC + G*i of a tile
    HC1, D1 = HC + 1, D + 1  # shapes of shared and local arrays must be constants of the closure
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    zero = np.dtype(dtype).type(0.0)

    @nvvm_inlined()
    def stage_x(x2, xs, r0, R):
        """Rows ``r0 .. r0+RT`` of ``x2`` into shared ``xs`` (zeros past ``R``)."""
        t = cuda.threadIdx.x
        for i in range(D):
            e = i * RT + t
            r = e // D
            xs[r, e - r * D] = x2[r0 + r, e - r * D] if r0 + r < R else zero

    @cuda.jit
    def forward(x2, W, bvec, out):
        """``out[r, h] = b[h] + sum_d x2[r, d] W[h, d]``."""
        xs = cuda.shared.array((RT, D), nb)
        w = cuda.local.array(D, nb)
        R, H = out.shape
        t = cuda.threadIdx.x
        c, g = t % HC, t // HC
        for h0 in range(0, H, HC):
            h = h0 + c
            bias = bvec[h] if h < H else zero
            for d in range(D):
                w[d] = W[h, d] if h < H else zero
            r0 = cuda.blockIdx.x * RT
            while r0 < R:
                stage_x(x2, xs, r0, R)
                cuda.syncthreads()
                if h < H:
                    for i in range(HC):
                        if r0 + g + G * i < R:
                            acc = bias
                            for d in range(D):
                                acc += xs[g + G * i, d] * w[d]
                            out[r0 + g + G * i, h] = acc
                cuda.syncthreads()
                r0 += cuda.gridDim.x * RT

    @cuda.jit
    def adjoint(dI, x2, W, dx2, partial):
        """``dx2 = dI W``; ``partial[block, h*D + d] = sum dI[r, h] x2[r, d]`` and ``partial[block, H*D + h] =
        sum dI[r, h]`` over the block's rows, in a fixed order. ``dx2`` is summed over the column chunks."""
        xs = cuda.shared.array((RT, D), nb)
        tile = cuda.shared.array((RT, HC1), nb)  # padded: thread t reads row t without bank conflicts
        red = cuda.shared.array((G, D1, HC), nb)
        acc = cuda.local.array(D1, nb)
        dxr = cuda.local.array(D, nb)
        R, H = dI.shape
        t = cuda.threadIdx.x
        c, g = t % HC, t // HC
        for h0 in range(0, H, HC):
            h = h0 + c
            for d in range(D1):
                acc[d] = zero
            r0 = cuda.blockIdx.x * RT
            while r0 < R:
                stage_x(x2, xs, r0, R)
                for i in range(HC):
                    r = r0 + g + G * i
                    tile[g + G * i, c] = dI[r, h] if r < R and h < H else zero
                cuda.syncthreads()
                for i in range(HC):  # sums for column h over this thread's rows, in row order
                    v = tile[g + G * i, c]
                    for d in range(D):
                        acc[d] += v * xs[g + G * i, d]
                    acc[D] += v
                for d in range(D):
                    dxr[d] = zero
                for cc in range(HC):  # dx of row t over this chunk's columns, in column order
                    if h0 + cc < H:
                        v = tile[t, cc]
                        for d in range(D):
                            dxr[d] += v * W[h0 + cc, d]
                if r0 + t < R:
                    for d in range(D):
                        dx2[r0 + t, d] = dxr[d] if h0 == 0 else dx2[r0 + t, d] + dxr[d]
                cuda.syncthreads()  # xs and the tile have been read
                r0 += cuda.gridDim.x * RT
            for d in range(D1):  # sum the row groups in order
                red[g, d, c] = acc[d]
            cuda.syncthreads()
            if g == 0 and h < H:
                for d in range(D1):
                    tot = zero
                    for q in range(G):
                        tot += red[q, d, c]
                    partial[cuda.blockIdx.x, h * D + d if d < D else H * D + h] = tot
            cuda.syncthreads()

    return SimpleNamespace(forward=forward, adjoint=adjoint, RT=RT)


def _thin(R, D, dtype):
    """The thin kernels and their block count for ``R`` rows of ``D`` features, or None when the projection is
    not thin."""
    if D > config.PROJECTION_THIN_MAX_D:
        return None
    k_ = _thin_kernels(np.dtype(dtype).str, D)
    fwd, adj, RT = k_.forward, k_.adjoint, k_.RT
    return fwd, adj, RT, max(1, min(math.ceil(R / RT), 8 * multiprocessors()))


def project(x2, W, bvec):
    """``x2 W^T + b`` for ``x2`` of shape (R, D): a device array (R, H)."""
    R, D = x2.shape
    H = W.shape[0]
    out = empty((R, H), W.dtype)
    thin = _thin(R, D, W.dtype)
    if thin is not None:
        fwd, _, RT, blocks = thin
        if R:
            fwd[blocks, RT](x2, W, bvec, out)
        return out
    launch_1d(_bias_rows(W.dtype.str), R * H, bvec, out)
    mm.gemm(mm.matrices(x2), mm.matrices(W).T, mm.matrices(out), beta=1.0)
    return out


def reduce_rows(a, b):
    """``a^T b`` summed over the (long) rows: ``a`` (R, M), ``b`` (R, Q) -> (M, Q), split and summed in order."""
    R, M = a.shape
    Q = b.shape[1]
    A, Bm = mm.matrices(a).T, mm.matrices(b)
    nsplit = mm.split_count(A, Bm)
    parts = zeros((nsplit, M, Q), a.dtype)
    mm.gemm(A, Bm, mm.matrices(parts), beta=1.0, nsplit=nsplit, split_stride=M * Q)
    return mm.sum_splits(parts, empty((M, Q), a.dtype))


def project_vjp(x2, W, dI2, dW_db=None):
    """Gradients ``(dW, db, dx2)`` of the projection for the cotangent ``dI2`` (R, H) (eq. 33); ``dW_db``, when
    given, are the weight and bias gradients computed already."""
    R, D = x2.shape
    H = W.shape[0]
    thin = _thin(R, D, W.dtype)
    if thin is not None and dW_db is None:
        _, adj, RT, blocks = thin
        dx2 = empty((R, D), W.dtype)
        parts = zeros((blocks, H * (D + 1)), W.dtype)
        if R:
            adj[blocks, RT](dI2, x2, W, dx2, parts)
        sums = mm.sum_splits(parts, empty((H * (D + 1),), W.dtype))
        return sums[:H * D].reshape(H, D), sums[H * D:], dx2
    if dW_db is None:
        dW = reduce_rows(dI2, x2)
        ones = fill(empty((R, 1), W.dtype), 1.0)
        db = reduce_rows(dI2, ones).reshape(W.shape[0])
    else:
        dW, db = dW_db
    dx2 = empty((R, D), W.dtype)
    mm.gemm(mm.matrices(dI2), mm.matrices(W), mm.matrices(dx2))
    return dW, db, dx2
