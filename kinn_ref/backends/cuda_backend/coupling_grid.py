"""The grid coupling on the device (eq. 7): stencil geometry, diagonal, gradient of the edge conductances
(eq. 34) and the implicit solve.

The implicit step solves ``(c_h - s_h L0) v = r`` per channel (eq. 15). ``L0`` does not depend on the
parameters, so it is diagonalised once per grid (``L0 = Q diag(lambda) Q^T`` with ``Q = Q_0 (x) Q_1`` for a
2-D grid): a solve is two small dense transforms per axis (tiled products over the batch) and one scaling,
with no factorisation per pass and no ``P x P`` matrix.
"""
from types import SimpleNamespace
import functools

import numpy as np

from kinn_ref.coupling import unit_laplacian_diagonal, unit_laplacian_sparse

from .coupling_dense import reciprocal
from .linalg import gemm as mm
from .node_math.stencil import geometry
from .runtime.compat import cuda_module
from .runtime.device import empty, kernel_cache, launch_1d, zeros

cuda = cuda_module()


@functools.lru_cache(maxsize=None)
def _host_constants(shape, boundary):
    """Edge counts ``n_p`` (P,), eigenvalues ``lambda_p`` (P,) and per-axis eigenvectors of ``L0``."""
    counts = -unit_laplacian_diagonal(shape, boundary)
    axes = []
    for n in shape:
        L = unit_laplacian_sparse((n,), boundary).toarray()
        lam, Q = np.linalg.eigh(L)
        axes.append((lam, Q))
    lam = axes[0][0] if len(shape) == 1 else (axes[0][0][:, None] + axes[1][0][None, :]).reshape(-1)
    return counts, lam, tuple(Q for _, Q in axes)


_device_constants = {}


def _constants(shape, boundary, dtype):
    """Device copies of :func:`_host_constants` (made once per grid and dtype)."""
    key = (shape, boundary, np.dtype(dtype).str)
    if key not in _device_constants:
        counts, lam, Qs = _host_constants(shape, boundary)
        to = lambda a: cuda.to_device(np.ascontiguousarray(a, dtype=dtype))  # noqa: E731
        _device_constants[key] = (to(counts), to(lam), tuple((to(Q), to(Q.T)) for Q in Qs))
    return _device_constants[key]


@kernel_cache
def _kernels(dtype):
    zero = np.dtype(dtype).type(0.0)

    @cuda.jit
    def diag(s, counts, d, H):
        """``d[k, p*H + h] = -n_p s[k, h]``."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = d.shape
        while i < K * N:
            k = i // N
            n = i % N
            d[k, n] = -counts[n // H] * s[k, n % H]
            i += stride

    @cuda.jit
    def edge_grad(dnode, dd, counts, ds):
        """``ds[k, h] = sum_p (dnode[k, p*H + h] - n_p dd[k, p*H + h])`` in order over points."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, H = ds.shape
        P = counts.shape[0]
        while i < K * H:
            k = i // H
            h = i % H
            acc = zero
            for p in range(P):
                acc += dnode[k, p * H + h] - counts[p] * dd[k, p * H + h]
            ds[k, h] = acc
            i += stride

    @cuda.jit
    def scale(X, c, s, lam, k):
        """``X[b, p*H + h] /= c[k, p*H + h] - s[k, h] lambda_p`` (X: (B, N))."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        B, N = X.shape
        H = s.shape[1]
        while i < B * N:
            b = i // N
            n = i % N
            X[b, n] = X[b, n] / (c[k, n] - s[k, n % H] * lam[n // H])
            i += stride

    return SimpleNamespace(diag=diag, edge_grad=edge_grad, scale=scale)


class GridCoupling:
    """RC mesh with per-channel edge conductances ``s`` (K, H), applied as a stencil (eq. 7)."""

    kind = "grid"

    def __init__(self, spec, circuit):
        self.spec, self.circuit = spec, circuit
        self.dtype = circuit.C.dtype
        self.K, self.N = circuit.C.shape
        self.H = spec.n_nodes
        self.geo = geometry(spec)
        self.counts, self.lam, self.Q = _constants(spec.grid_shape, spec.boundary, self.dtype)
        self._cinv = None

    @property
    def s(self):
        return self.circuit.A

    def diag(self):
        d = empty((self.K, self.N), self.dtype)
        launch_1d(_kernels(self.dtype.str).diag, d.size, self.s, self.counts, d, self.H)
        return d

    def c_inverse(self):
        """``1/C`` (K, N), computed once per pass."""
        if self._cinv is None:
            self._cinv = reciprocal(self.circuit.C)
        return self._cinv

    def start_backward(self):
        """Nothing to allocate: the grid's gradient sums live in the slots of :mod:`.node_math.slots`."""

    def finalize_inputs(self):
        z = zeros((self.K, self.N), self.dtype)
        return self.s, z, z

    def param_grad(self, consts, dd, dnode):
        """Gradient of the edge conductances ``s`` (K, H)."""
        ds = empty((self.K, self.H), self.dtype)
        launch_1d(_kernels(self.dtype.str).edge_grad, ds.size, dnode, dd, self.counts, ds)
        return ds

    def _axis(self, Q, src, src_off, src_bs, dst, dst_off, dst_bs, axis, B):
        """``dst = Q @ src`` along grid axis ``axis`` for B rows of N values at ``off + b*bs``."""
        H, n0, n1, two_d, _ = self.geo
        Qo = mm.matrices(Q)
        Qo = mm.Operand(Qo.data, 0, 0, Qo.row_stride, 1, Qo.rows, Qo.cols)
        if axis == 1 and n0 > 1:  # batches (b, i0) of (n1, H) matrices: contiguous rows required
            assert src_bs == self.N and dst_bs == self.N
            X = mm.Operand(src, src_off, n1 * H, H, 1, n1, H)
            Y = mm.Operand(dst, dst_off, n1 * H, H, 1, n1, H)
            mm.gemm(Qo, X, Y, batch=B * n0)
        else:
            n, width = (n0, n1 * H) if axis == 0 else (n1, H)
            X = mm.Operand(src, src_off, src_bs, width, 1, n, width)
            Y = mm.Operand(dst, dst_off, dst_bs, width, 1, n, width)
            mm.gemm(Qo, X, Y, batch=B)

    def solve(self, c, k, src, src_off, src_bs, dst, dst_off, dst_bs, B):
        """``v (c_h - s_h L0) = r`` for the B rows ``r`` of cell ``k`` (flat arrays, row ``b`` at
        ``off + b*bs``), per channel; ``c`` (K, N) is ``C/dt + g``. ``L0`` is symmetric: the same routine
        solves the transposed system."""
        two_d = self.geo[3]
        N = self.N
        t1, t2 = empty((B, N), self.dtype), empty((B, N), self.dtype)
        f1, f2 = t1.reshape(t1.size), t2.reshape(t2.size)
        (Q0, Q0T), *rest = self.Q
        if two_d:
            (Q1, Q1T), = rest
            self._axis(Q0T, src, src_off, src_bs, f1, 0, N, 0, B)
            self._axis(Q1T, f1, 0, N, f2, 0, N, 1, B)
        else:
            Q1, Q1T = Q0, Q0T
            self._axis(Q1T, src, src_off, src_bs, f2, 0, N, 1, B)
        launch_1d(_kernels(self.dtype.str).scale, B * N, t2, c, self.s, self.lam, k)
        if two_d:
            self._axis(Q1, f2, 0, N, f1, 0, N, 1, B)
            self._axis(Q0, f1, 0, N, dst, dst_off, dst_bs, 0, B)
        else:
            self._axis(Q1, f2, 0, N, dst, dst_off, dst_bs, 1, B)
