"""The input projection ``I = x W^T + b`` (eq. 3) and its adjoint (eq. 33) on the device.

Rows are the flattened leading axes of ``x`` (batch, steps of a sequence, grid points) and columns the
channels ``H``: node ``p*H + h`` of a grid is column ``h`` of row ``(b, t, p)``.
"""
from . import gemm as mm
from .compat import cuda_module
from .device import empty, fill, kernel_cache, launch_1d, zeros

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


def project(x2, W, bvec):
    """``x2 W^T + b`` for ``x2`` of shape (R, D): a device array (R, H)."""
    R = x2.shape[0]
    H = W.shape[0]
    out = empty((R, H), W.dtype)
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
    if dW_db is None:
        dW = reduce_rows(dI2, x2)
        ones = fill(empty((R, 1), W.dtype), 1.0)
        db = reduce_rows(dI2, ones).reshape(W.shape[0])
    else:
        dW, db = dW_db
    dx2 = empty((R, D), W.dtype)
    mm.gemm(mm.matrices(dI2), mm.matrices(W), mm.matrices(dx2))
    return dW, db, dx2
