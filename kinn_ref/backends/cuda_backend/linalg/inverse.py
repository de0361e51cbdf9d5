"""The batched inverse ``(diag(c[k]) - M[k])^{-1}`` of the implicit methods' per-cell matrices (eqs. 15, 36).

Gauss-Jordan elimination with partial pivoting, one block per cell, computed once per pass on the device.
"""
import numpy as np

from ..runtime import config
from ..runtime.compat import cuda_module
from ..runtime.device import empty, kernel_cache

cuda = cuda_module()


@kernel_cache
def _inverse_kernel(dtype):
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    f = np.dtype(dtype).type
    zero, one = f(0.0), f(1.0)
    NT = config.INVERSE_BLOCK

    @cuda.jit
    def gauss_jordan(c, M, work, fac, out):
        """``out[k] = (diag(c[k]) - M[k])^{-1}``; one block per cell, ``work`` (K, N, 2N), ``fac`` (K, N)."""
        k = cuda.blockIdx.x
        t = cuda.threadIdx.x
        N = M.shape[1]
        best_v = cuda.shared.array(NT, nb)
        best_i = cuda.shared.array(NT, np.int32)
        piv = cuda.shared.array(1, np.int32)
        for e in range(t, N * 2 * N, NT):
            r = e // (2 * N)
            col = e % (2 * N)
            if col < N:
                work[k, r, col] = (c[k, r] if r == col else zero) - M[k, r, col]
            else:
                work[k, r, col] = one if col - N == r else zero
        cuda.syncthreads()
        for j in range(N):
            bv = -one
            bi = j
            for r in range(j + t, N, NT):
                v = abs(work[k, r, j])
                if v > bv:
                    bv = v
                    bi = r
            best_v[t] = bv
            best_i[t] = bi
            cuda.syncthreads()
            if t == 0:
                bv = best_v[0]
                bi = best_i[0]
                for u in range(1, NT):
                    if best_v[u] > bv:
                        bv = best_v[u]
                        bi = best_i[u]
                piv[0] = bi
            cuda.syncthreads()
            p = piv[0]
            if p != j:
                for col in range(t, 2 * N, NT):
                    tmp = work[k, j, col]
                    work[k, j, col] = work[k, p, col]
                    work[k, p, col] = tmp
            cuda.syncthreads()
            pv = work[k, j, j]
            cuda.syncthreads()
            for col in range(t, 2 * N, NT):
                work[k, j, col] = work[k, j, col] / pv
            for r in range(t, N, NT):
                fac[k, r] = work[k, r, j]
            cuda.syncthreads()
            for e in range(t, N * 2 * N, NT):
                r = e // (2 * N)
                col = e % (2 * N)
                if r != j:
                    work[k, r, col] -= fac[k, r] * work[k, j, col]
            cuda.syncthreads()
        for e in range(t, N * N, NT):
            out[k, e // N, e % N] = work[k, e // N, N + e % N]

    return gauss_jordan


def invert(c, M):
    """``(diag(c[k]) - M[k])^{-1}`` for every cell (device arrays ``c`` (K, N), ``M`` (K, N, N))."""
    K, N = c.shape
    out = empty((K, N, N), c.dtype)
    _inverse_kernel(c.dtype.str)[K, config.INVERSE_BLOCK](c, M, empty((K, N, 2 * N), c.dtype),
                                                          empty((K, N), c.dtype), out)
    return out
