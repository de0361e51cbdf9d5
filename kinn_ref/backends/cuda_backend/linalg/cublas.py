"""Matrix products on cuBLAS, through CuPy, on the backend's own device arrays (no copies).

:func:`.gemm.gemm` hands a product here when cuBLAS is in use (:func:`active`); the tiled kernel of
:mod:`.gemm` stays the fallback, and computes every product whose layout cuBLAS cannot express. CuPy is an
optional dependency (the ``cuda`` extra pins a version that shares numba's CUDA context): the operands are
the flat numba device arrays of :class:`.gemm.Operand`, passed to ``cublas<S|D>gemmStridedBatched`` as raw
device pointers, on the default stream both libraries use, so numba's kernels and cuBLAS are ordered with
each other without synchronisation.

Which library computes the products is ``config.GEMM_LIBRARY``: ``"auto"`` (cuBLAS when CuPy imports and
works on this device, else the tiled kernel), ``"cublas"`` (an error when it cannot be used) or ``"own"``;
the environment variable ``KINN_REF_CUDA_GEMM`` sets its default. cuBLAS runs in its default math mode
(no TF32), so float32 products keep float32 accuracy; its products are deterministic run to run.
"""
import numpy as np

from ..runtime import config
from ..runtime.compat import simulator_active

_OP_N, _OP_T = 0, 1           # cublasOperation_t
_STATE = {}                   # "why": None when usable, else the reason; "lib", "handle"


def unavailable():
    """None when cuBLAS can compute the products here, else why not (a sentence)."""
    if "why" not in _STATE:
        _STATE["why"] = _probe()
    return _STATE["why"]


def active():
    """Whether :func:`.gemm.gemm` hands its products to cuBLAS (``config.GEMM_LIBRARY``)."""
    choice = config.GEMM_LIBRARY
    if choice == "own":
        return False
    if choice not in ("auto", "cublas"):
        raise ValueError(f"config.GEMM_LIBRARY (or KINN_REF_CUDA_GEMM) must be 'auto', 'cublas' or 'own', "
                         f"got {choice!r}")
    why = unavailable()
    if why is not None and choice == "cublas":
        raise RuntimeError(f"GEMM_LIBRARY='cublas' but cuBLAS cannot be used: {why}")
    return why is None


def _probe():
    if simulator_active():
        return "the CUDA simulator has no cuBLAS"
    try:
        import cupy
        from cupy_backends.cuda.libs import cublas
        handle = cupy.cuda.device.get_cublas_handle()
    except Exception as exc:  # not installed, or its CUDA libraries are missing: the tiled kernel is used
        return f"CuPy's cuBLAS is not importable ({type(exc).__name__}: {exc}); pip install 'kinn-ref[cuda]'"
    _STATE.update(lib=cublas, handle=handle)
    return _self_check()


def _self_check():
    """One small product, checked against NumPy: guards against a CuPy whose binding differs from the one
    this module calls (which would compute silently wrong products)."""
    from numba import cuda
    from .gemm import matrices
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 4))
    c = rng.standard_normal((3, 4))
    out = cuda.to_device(c)
    try:
        if not gemm(matrices(cuda.to_device(a)), matrices(cuda.to_device(b)), matrices(out), 2.0, 0.5, 1):
            return "the check product was refused"
        got = out.copy_to_host()
    except Exception as exc:
        return f"cuBLAS failed on a check product ({type(exc).__name__}: {exc})"
    want = 2.0 * a @ b + 0.5 * c
    if not np.allclose(got, want, rtol=1e-12, atol=1e-12):
        return f"cuBLAS computed a check product wrongly (max error {np.abs(got - want).max():.3g})"
    return None


def _ld(rows, cols, stride_rows, stride_cols):
    """``(op, ld)`` of a column-major cuBLAS operand holding the ``rows x cols`` matrix whose element
    ``(i, j)`` is at ``i*stride_rows + j*stride_cols``, or None when no unit stride allows it."""
    if stride_rows == 1 and (cols == 1 or stride_cols >= max(1, rows)):
        return _OP_N, max(stride_cols, rows, 1)
    if stride_cols == 1 and (rows == 1 or stride_rows >= max(1, cols)):
        return _OP_T, max(stride_rows, cols, 1)
    return None


def gemm(a, b, c, alpha, beta, batch):
    """``c[z] = alpha a[z] @ b[z] + beta c[z]`` on cuBLAS for :class:`.gemm.Operand` views; False (nothing
    done) when the layout has no cuBLAS form, True when computed."""
    M, KD, N = a.rows, a.cols, b.cols
    dtype = c.data.dtype
    if dtype not in (np.float32, np.float64) or a.data.dtype != dtype or b.data.dtype != dtype:
        return False
    if c.col_stride == 1 and (M == 1 or c.row_stride >= max(1, N)):
        # row-major c: c^T = b^T a^T, column-major (N x M) with leading dimension c.row_stride
        m, n, ldc = N, M, max(c.row_stride, N, 1)
        x, fx = b, _ld(N, KD, b.col_stride, b.row_stride)
        y, fy = a, _ld(KD, M, a.col_stride, a.row_stride)
    elif c.row_stride == 1 and (N == 1 or c.col_stride >= max(1, M)):
        m, n, ldc = M, N, max(c.col_stride, M, 1)
        x, fx = a, _ld(M, KD, a.row_stride, a.col_stride)
        y, fy = b, _ld(KD, N, b.row_stride, b.col_stride)
    else:
        return False
    if fx is None or fy is None or max(m, n, KD, batch) >= 2 ** 31:
        return False
    if M == 0 or N == 0:
        return True
    (opx, ldx), (opy, ldy) = fx, fy
    lib = _STATE["lib"]
    call = lib.sgemmStridedBatched if dtype == np.float32 else lib.dgemmStridedBatched
    scalars = np.array([alpha, beta], dtype=dtype)      # host pointer mode: read during the call
    size = dtype.itemsize
    call(_STATE["handle"], opx, opy, m, n, KD, scalars.ctypes.data,
         _pointer(x) + x.offset * size, ldx, x.batch_stride,
         _pointer(y) + y.offset * size, ldy, y.batch_stride,
         scalars.ctypes.data + size,
         _pointer(c) + c.offset * size, ldc, c.batch_stride, batch)
    return True


def _pointer(operand):
    return operand.data.__cuda_array_interface__["data"][0]
