"""The grid coupling as a stencil (eq. 7), evaluated inside the step kernels: twin of
:meth:`kinn_ref.coupling.GridCoupling._laplacian`.

A grid is described to kernels by the tuple ``geo = (H, n0, n1, two_d, boundary)`` (a 1-D grid of P points
has ``n0 = 1, n1 = P``); node ``p*H + h`` with ``p = i0*n1 + i1``.
"""
import numpy as np

from .compat import cuda_module
from .device import kernel_cache

cuda = cuda_module()

BOUNDARY_CODES = {"periodic": 0, "neumann": 1, "dirichlet": 2}


def geometry(spec):
    """The ``geo`` tuple of ``spec`` (zeros for couplings other than grid)."""
    if spec.coupling != "grid":
        return (1, 1, 1, 0, 0)
    shape = spec.grid_shape
    n0, n1 = (1, shape[0]) if len(shape) == 1 else shape
    return (spec.n_nodes, n0, n1, int(len(shape) == 2), BOUNDARY_CODES[spec.boundary])


@kernel_cache
def stencil_functions(dtype):
    """``lap(X, sc, use_sc, b, k, n, geo, full)``: ``(L0 (sc*X))`` at node ``n`` of cell ``k``, row ``b``
    (``full=False``: the neighbour sum only, the off-diagonal part)."""
    f = np.dtype(dtype).type
    zero, one, two = f(0.0), f(1.0), f(2.0)

    @cuda.jit(device=True, inline=True)
    def val(X, sc, use_sc, b, k, i):
        return X[b, k, i] * sc[k, i] if use_sc else X[b, k, i]

    @cuda.jit(device=True, inline=True)
    def axis(X, sc, use_sc, b, k, i, m, stride, base, bnd):
        """Neighbour sum and edge count along one axis: index ``i`` of ``m``, neighbours ``base +- stride``."""
        acc = zero
        cnt = zero
        if bnd == 0:
            lo = base - stride if i > 0 else base + (m - 1) * stride
            hi = base + stride if i < m - 1 else base - (m - 1) * stride
            acc = val(X, sc, use_sc, b, k, lo) + val(X, sc, use_sc, b, k, hi)
            cnt = two
        else:
            if i > 0:
                acc += val(X, sc, use_sc, b, k, base - stride)
                cnt += one
            if i < m - 1:
                acc += val(X, sc, use_sc, b, k, base + stride)
                cnt += one
            if bnd == 2:
                cnt = two
        return acc, cnt

    @cuda.jit(device=True, inline=True)
    def lap(X, sc, use_sc, b, k, n, geo, full):
        H, n0, n1, two_d, bnd = geo
        p = n // H
        i0 = p // n1
        i1 = p % n1
        acc, cnt = axis(X, sc, use_sc, b, k, i1, n1, H, n, bnd)
        if two_d:
            a0, c0 = axis(X, sc, use_sc, b, k, i0, n0, n1 * H, n, bnd)
            acc += a0
            cnt += c0
        if full:
            acc -= cnt * val(X, sc, use_sc, b, k, n)
        return acc

    return lap
