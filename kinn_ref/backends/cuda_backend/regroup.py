"""A grid layer's readout regrouped per grid point, and back, on the device.

Twins of :meth:`kinn_ref.network.KINN._to_points` and :meth:`~kinn_ref.network.KINN._from_points`: the readout
``(..., m*P*H)``, ordered (readout block ``j``, point ``p``, channel ``h``), becomes ``(..., P, m*H)``, one
feature vector per point (the next layer's or the head's input), and the cotangent goes the other way.
"""
from ..launch_warnings import quiet_launches
from .runtime.compat import cuda_module
from .runtime.device import empty, flat, kernel_cache, launch_1d

cuda = cuda_module()


@kernel_cache
def _regroup_kernel(dtype):
    @cuda.jit
    def regroup(src, dst, m, P, H, to_points):
        """Element ``(row, j, p, h)`` of the readout is element ``(row, p, j*H + h)`` of the per-point array; ``i``
        walks the readout's layout: ``to_points`` copies the readout ``src`` into the per-point ``dst``, else
        the per-point ``src`` into the readout ``dst``."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        block = m * P * H
        while i < src.shape[0]:
            row = i // block
            r = i - row * block
            j = r // (P * H)
            p = (r // H) % P
            h = r % H
            k = row * block + p * (m * H) + j * H + h
            if to_points:
                dst[k] = src[i]
            else:
                dst[i] = src[k]
            i += stride

    return regroup


def _run(spec, a, shape, to_points):
    m = spec.readout_width // spec.total_nodes
    out = empty(shape, a.dtype)
    if a.size:
        launch_1d(_regroup_kernel(a.dtype.str), a.size, flat(a), flat(out), m, spec.n_points, spec.n_nodes,
                  to_points)
    return out


@quiet_launches
def to_points(spec, y):
    """The grid readout ``y`` (..., m*P*H) per point: (..., P, m*H) (twin of ``KINN._to_points``)."""
    if spec.coupling != "grid":
        return y
    m = spec.readout_width // spec.total_nodes
    return _run(spec, y, tuple(y.shape[:y.ndim - 1]) + (spec.n_points, m * spec.n_nodes), True)


@quiet_launches
def from_points(spec, dz):
    """The cotangent ``dz`` (..., P, m*H) of :func:`to_points` as one of the readout (twin of
    ``KINN._from_points``)."""
    if spec.coupling != "grid":
        return dz
    return _run(spec, dz, tuple(dz.shape[:dz.ndim - 2]) + (spec.readout_width,), False)
