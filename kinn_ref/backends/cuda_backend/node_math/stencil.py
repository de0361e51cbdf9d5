"""The grid coupling as a stencil (eq. 7), evaluated inside the step kernels: twin of
:meth:`kinn_ref.coupling.GridCoupling._laplacian`.

A grid is described to kernels by the tuple ``geo = (H, n0, n1, two_d, boundary)`` (a 1-D grid of P points
has ``n0 = 1, n1 = P``); node ``p*H + h`` with ``p = i0*n1 + i1``.
"""
from types import SimpleNamespace
import numpy as np

from ...codes import BOUNDARY_CODES
from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import kernel_cache

cuda = cuda_module()



def geometry(spec):
    """The ``geo`` tuple of ``spec`` (zeros for couplings other than grid)."""
    if spec.coupling != "grid":
        return (1, 1, 1, 0, 0)
    shape = spec.grid_shape
    n0, n1 = (1, shape[0]) if len(shape) == 1 else shape
    return (spec.n_nodes, n0, n1, int(len(shape) == 2), BOUNDARY_CODES[spec.boundary])


@kernel_cache
def stencil_functions(dtype):
    """``(neighbours, lap)``.

    ``neighbours(n, geo)``: ``nbr = (h, lo1, hi1, lo0, hi0, cnt, two_d)`` of node ``n``: its channel, its
    neighbours along the last and the first axis (-1 where the boundary leaves none) and its edge count.
    Kernels compute it once per thread, outside their loop over batch rows (it takes integer divisions).
    ``lap(X, sc, use_sc, b, k, n, nbr, full)``: ``(L0 (sc*X))`` at node ``n`` of cell ``k``, row ``b``
    (``full=False``: the neighbour sum only, the off-diagonal part).
    """
    f = np.dtype(dtype).type
    zero, one, two = f(0.0), f(1.0), f(2.0)

    @nvvm_inlined()
    def val(X, sc, use_sc, b, k, i):
        return X[b, k, i] * sc[k, i] if use_sc else X[b, k, i]

    @nvvm_inlined()
    def axis(i, m, stride, base, bnd):
        """Neighbours and edge count along one axis: index ``i`` of ``m``, neighbours ``base +- stride``."""
        if bnd == 0:
            if m == 1:  # the wrap-around edges of a 1-point axis are self loops: no current, no edge count
                return -1, -1, zero
            lo = base - stride if i > 0 else base + (m - 1) * stride
            hi = base + stride if i < m - 1 else base - (m - 1) * stride
            return lo, hi, two
        lo = base - stride if i > 0 else -1
        hi = base + stride if i < m - 1 else -1
        cnt = (one if i > 0 else zero) + (one if i < m - 1 else zero)
        if bnd == 2:
            cnt = two
        return lo, hi, cnt

    @nvvm_inlined()
    def neighbours(n, geo):
        H, n0, n1, two_d, bnd = geo
        p = n // H
        i0 = p // n1
        i1 = p - i0 * n1
        lo1, hi1, cnt = axis(i1, n1, H, n, bnd)
        lo0, hi0, c0 = axis(i0, n0, n1 * H, n, bnd)
        if two_d:
            cnt += c0
        return n - p * H, lo1, hi1, lo0, hi0, cnt, two_d

    @nvvm_inlined()
    def pair(X, sc, use_sc, b, k, lo, hi):
        a = val(X, sc, use_sc, b, k, lo) if lo >= 0 else zero
        return a + (val(X, sc, use_sc, b, k, hi) if hi >= 0 else zero)

    @nvvm_inlined()
    def lap(X, sc, use_sc, b, k, n, nbr, full):
        acc = pair(X, sc, use_sc, b, k, nbr[1], nbr[2])
        if nbr[6]:
            acc += pair(X, sc, use_sc, b, k, nbr[3], nbr[4])
        if full:
            acc -= nbr[5] * val(X, sc, use_sc, b, k, n)
        return acc

    return SimpleNamespace(neighbours=neighbours, lap=lap)
