"""Dense and kirchhoff couplings on the device (eqs. 5-6, gradients eq. 34): per-cell ``N x N`` matrices.

Per pass the coupling keeps ``M_full[k] = A_k`` (dense ``G``; kirchhoff ``S - diag(S 1)``) and
``M_off[k] = O_k`` (``A_k`` without its diagonal; kirchhoff ``S``). Products over the batch go through the
tiled product (:mod:`.linalg.gemm`). The backward accumulates two ``N x N`` sums per cell, ``X_int`` (from the
integrator: ``sum dV1^T V`` for euler/expeuler, ``sum lambda^T V'`` for implicit, ``sum lambda^T (V + V')`` for
trapezoidal) and ``X_rhs``
(``sum dF^T S`` from right-hand-side adjoints); :meth:`MatrixCoupling.param_grad` turns them into the
gradient of ``G`` or ``S`` (the scaling by ``p`` or ``1/C`` is applied once, per row). Implicit steps apply
``(diag(c) - A_k)^{-1}``, computed once per pass on the device (:func:`.linalg.inverse.invert`).
"""
from types import SimpleNamespace
import math

import numpy as np

from ..codes import INTEGRATOR_CODES
from .linalg import cublas
from .linalg import gemm as mm
from .runtime import config
from .runtime.compat import cuda_module
from .runtime.device import empty, kernel_cache, launch_1d, multiprocessors, zeros

cuda = cuda_module()

EULER, EXPEULER, IMPLICIT, TRAPEZOIDAL = (INTEGRATOR_CODES[name] for name in ("euler", "expeuler", "implicit",
                                                                          "trapezoidal"))


@kernel_cache
def _kernels(dtype):
    f = np.dtype(dtype).type
    zero, one = f(0.0), f(1.0)

    @cuda.jit
    def matrices(A, kirchhoff, full, off, diag):
        """``M_full``, ``M_off`` and ``d = diag(M_full)`` from ``G`` (dense) or ``S`` (kirchhoff)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = A.shape[0], A.shape[1]
        while i < K * N:
            k = i // N
            r = i % N
            if kirchhoff:
                rs = zero
                for c in range(N):
                    rs += A[k, r, c]
                for c in range(N):
                    a = A[k, r, c]
                    off[k, r, c] = a
                    full[k, r, c] = a - rs if c == r else a
                diag[k, r] = -rs
            else:
                for c in range(N):
                    a = A[k, r, c]
                    full[k, r, c] = a
                    off[k, r, c] = zero if c == r else a
                diag[k, r] = A[k, r, r]
            i += stride

    @cuda.jit
    def row_scaled(M, v, out):
        """``out[k] = diag(v[k]) M[k]``."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = M.shape[0], M.shape[1]
        while i < K * N * N:
            k = i // (N * N)
            r = (i // N) % N
            out[k, r, i % N] = v[k, r] * M[k, r, i % N]
            i += stride

    @cuda.jit
    def row_dot(M, X, out):
        """``out[k, r] = sum_c M[k, r, c] X[k, r, c]`` (in order)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = M.shape[0], M.shape[1]
        while i < K * N:
            k = i // N
            r = i % N
            acc = zero
            for c in range(N):
                acc += M[k, r, c] * X[k, r, c]
            out[k, r] = acc
            i += stride

    @cuda.jit
    def param_grad(Xi, Xr, p, Cinv, dd, code, kirchhoff, out):
        """Gradient of ``G`` (dense) or ``S`` (kirchhoff) (eq. 34) from the per-pass sums; ``code`` of
        :data:`.integrators.CODES`."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = Xi.shape[0], Xi.shape[1]
        while i < K * N * N:
            k = i // (N * N)
            r = (i // N) % N
            c = i % N
            full = Xr[k, r, c] * Cinv[k, r]
            full_rr = Xr[k, r, r] * Cinv[k, r]
            off = zero
            if code == EULER:
                full += p[k, r] * Xi[k, r, c]
                full_rr += p[k, r] * Xi[k, r, r]
            elif code == IMPLICIT or code == TRAPEZOIDAL:
                full += Xi[k, r, c]
                full_rr += Xi[k, r, r]
            elif code == EXPEULER:
                off = p[k, r] * Xi[k, r, c]
            if kirchhoff:
                out[k, r, c] = full - full_rr + off - dd[k, r]
            elif r == c:
                out[k, r, c] = full + dd[k, r]
            else:
                out[k, r, c] = full + off
            i += stride

    @cuda.jit
    def reciprocal(a, out):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = a.shape
        while i < K * N:
            out[i // N, i % N] = one / a[i // N, i % N]
            i += stride

    return SimpleNamespace(matrices=matrices, row_scaled=row_scaled, row_dot=row_dot, param_grad=param_grad,
                           reciprocal=reciprocal)


def _cells(a, k=None):
    """Operand over the cells of a (B, K, N) array: batch = cell, rows = batch rows (or one cell ``k``)."""
    B, K, N = a.shape
    if k is None:
        return mm.Operand(a.reshape(a.size), 0, N, K * N, 1, B, N)
    return mm.Operand(a.reshape(a.size), k * N, 0, K * N, 1, B, N)


class MatrixCoupling:
    """Dense (eq. 5) or kirchhoff (eq. 6) coupling applied as per-cell matrix products."""

    def __init__(self, spec, circuit):
        self.spec, self.circuit = spec, circuit
        self.kind = spec.coupling
        self.dtype = circuit.C.dtype
        self.K, self.N = circuit.C.shape
        K, N = self.K, self.N
        self.full, self.off, self._diag = empty((K, N, N), self.dtype), empty((K, N, N), self.dtype), \
            empty((K, N), self.dtype)
        matrices = _kernels(self.dtype.str).matrices
        launch_1d(matrices, K * N, circuit.A, self.kind == "kirchhoff", self.full, self.off, self._diag)
        self._scaled = {}
        self.Xi = self.Xr = None

    def diag(self):
        """``d_k = diag(A_k)`` (K, N)."""
        return self._diag

    def matrix(self, mode):
        """``M_full`` (``"full"``) or ``M_off`` (``"off"``), (K, N, N)."""
        return self.full if mode == "full" else self.off

    def scaled(self, name, v, mode):
        """``diag(v[k]) M_mode[k]``, computed once per pass and kept under ``name``."""
        if name not in self._scaled:
            out = empty((self.K, self.N, self.N), self.dtype)
            launch_1d(_kernels(self.dtype.str).row_scaled, out.size, self.matrix(mode), v, out)
            self._scaled[name] = out
        return self._scaled[name]

    def product(self, X, M, out, alpha=1.0, transpose=True, k=None, beta=0.0):
        """``out[b, k] = alpha X[b, k] @ M[k]^T`` (``transpose``) or ``@ M[k]``, plus ``beta out[b, k]``, for
        all cells or cell ``k``."""
        Mo = mm.matrices(M)
        if k is not None:
            Mo = mm.Operand(Mo.data, k * self.N * self.N, 0, Mo.row_stride, 1, self.N, self.N)
        if transpose:
            Mo = Mo.T
        batch = self.K if k is None else 1
        mm.gemm(_cells(X, k), Mo, _cells(out, k), alpha=alpha, beta=beta, batch=batch)

    def start_backward(self):
        """Forget the gradient sums of an earlier backward pass."""
        self.Xi = self.Xr = None

    def _accumulators(self, rows):
        """Allocate ``X_int``, ``X_rhs`` split so that the ``N x N`` reductions over ``rows`` fill the device."""
        if self.Xi is None:
            K, N = self.K, self.N
            BM = config.GEMM_TILE[self.dtype.itemsize][0]
            tiles = math.ceil(N / BM) ** 2 * K
            self._nsplit = 1 if cublas.active() else max(1, min(math.ceil(2 * multiprocessors() / tiles),
                                                                rows // config.GEMM_SPLIT_MIN))
            self.Xi = zeros((self._nsplit, K, N, N), self.dtype)
            self.Xr = zeros((self._nsplit, K, N, N), self.dtype)
        return self._nsplit

    def accumulate(self, which, Z, V, alpha=1.0, k=None):
        """``X_which[k] += alpha Z_k^T V_k`` summed over the batch, for all cells or cell ``k``.

        ``which`` is ``"int"`` (integrator) or ``"rhs"`` (right-hand-side adjoints); ``Z``, ``V`` are (B, K, N).
        """
        nsplit = self._accumulators(V.shape[0])
        X = self.Xi if which == "int" else self.Xr
        K, N = self.K, self.N
        C = mm.Operand(X.reshape(X.size), 0 if k is None else k * N * N, N * N, N, 1, N, N)
        mm.gemm(_cells(Z, k).T, _cells(V, k), C, alpha=alpha, beta=1.0, batch=K if k is None else 1,
                nsplit=nsplit, split_stride=K * N * N)

    def set_integrator_sums(self, parts):
        """Use ``parts`` (splits, K, N, N) as the integrator's ``X_int`` (computed by the persistent kernels)."""
        self._accumulators(1)
        self.Xi = parts

    def _sums(self):
        K, N = self.K, self.N
        if self.Xi is None:
            return zeros((K, N, N), self.dtype), zeros((K, N, N), self.dtype)
        return (mm.sum_splits(self.Xi, empty((K, N, N), self.dtype)),
                mm.sum_splits(self.Xr, empty((K, N, N), self.dtype)))

    def finalize_inputs(self):
        """``(s, xdot, xdot_rhs)`` for :func:`.integrators.finalize`."""
        K, N = self.K, self.N
        self._Xi_sum, self._Xr_sum = self._sums()
        row_dot = _kernels(self.dtype.str).row_dot
        xdot, xdot_rhs = empty((K, N), self.dtype), empty((K, N), self.dtype)
        mode = "off" if self.spec.integrator == "expeuler" else "full"
        launch_1d(row_dot, K * N, self.matrix(mode), self._Xi_sum, xdot)
        launch_1d(row_dot, K * N, self.full, self._Xr_sum, xdot_rhs)
        return zeros((K, 1), self.dtype), xdot, xdot_rhs

    def param_grad(self, consts, dd, dnode):
        """Gradient of ``G`` (dense) or of ``S`` (kirchhoff), (K, N, N)."""
        kern = _kernels(self.dtype.str).param_grad
        out = empty((self.K, self.N, self.N), self.dtype)
        launch_1d(kern, out.size, self._Xi_sum, self._Xr_sum, consts.c2, self.c_inverse(), dd,
                  INTEGRATOR_CODES[self.spec.integrator], self.kind == "kirchhoff", out)
        return out

    def c_inverse(self):
        """``1/C`` (K, N), computed once per pass."""
        if "Cinv" not in self._scaled:
            self._scaled["Cinv"] = reciprocal(self.circuit.C)
        return self._scaled["Cinv"]


def reciprocal(a):
    """``1/a`` elementwise for a (K, N) device array."""
    out = empty(a.shape, a.dtype)
    launch_1d(_kernels(a.dtype.str).reciprocal, out.size, a, out)
    return out
