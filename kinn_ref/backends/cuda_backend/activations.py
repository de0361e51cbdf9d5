"""Elementwise activations between layers on the device, each beside its derivative.

Twins of :mod:`kinn_ref.activations` (``relu``, ``tanh``, ``sigmoid``, ``softplus``, ``identity``):
:func:`activation` returns the value and the input it was computed from; :func:`activation_vjp` returns
``dy * f'(z)``. The same formulas as the host functions, in the same order of operations; softplus and
sigmoid are those of :mod:`.node_math.scalars`.
"""
import math

import numpy as np

from ..launch_warnings import quiet_launches
from .node_math.scalars import scalar_functions
from .runtime.compat import cuda_module, nvvm_inlined
from .runtime.device import empty, flat, kernel_cache, launch_1d

cuda = cuda_module()


@kernel_cache
def _activation_kernels(name, dtype):
    cast = np.dtype(dtype).type
    zero, one = cast(0.0), cast(1.0)
    fn = scalar_functions(dtype)
    softplus, sigmoid = fn.softplus, fn.sigmoid

    if name == "relu":
        @nvvm_inlined()
        def value(z):
            return zero if z <= zero else z      # NaN stays NaN, as in numpy.maximum

        @nvvm_inlined()
        def vjp(dy, z, fz):
            return dy * (one if z > zero else zero)
    elif name == "tanh":
        @nvvm_inlined()
        def value(z):
            return math.tanh(z)

        @nvvm_inlined()
        def vjp(dy, z, fz):
            return dy * (one - fz * fz)
    elif name == "sigmoid":
        @nvvm_inlined()
        def value(z):
            return sigmoid(z)

        @nvvm_inlined()
        def vjp(dy, z, fz):
            return dy * fz * (one - fz)
    elif name == "softplus":
        @nvvm_inlined()
        def value(z):
            return softplus(z)

        @nvvm_inlined()
        def vjp(dy, z, fz):
            return dy * sigmoid(z)
    else:
        raise ValueError(f"no device kernels for activation {name!r}")

    @cuda.jit
    def forward(z, out):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < z.shape[0]:
            out[i] = value(z[i])
            i += stride

    @cuda.jit
    def backward(dy, z, fz, dz):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < z.shape[0]:
            dz[i] = vjp(dy[i], z[i], fz[i])
            i += stride

    return forward, backward


@quiet_launches
def activation(name, z):
    """Activation ``name`` of the contiguous device array ``z`` (twin of :func:`kinn_ref.activations.activation`).

    Returns
    -------
    out : device array, shape of ``z``
        ``z`` itself for ``"identity"``.
    """
    if name == "identity":
        return z
    forward, _ = _activation_kernels(name, z.dtype.str)
    out = empty(z.shape, z.dtype)
    launch_1d(forward, z.size, flat(z), flat(out))
    return out


@quiet_launches
def activation_vjp(name, z, out, dy):
    """``dy * f'(z)`` for the activation ``name`` whose value at ``z`` was ``out`` (the vjp the host twin
    returns)."""
    if name == "identity":
        return dy
    _, backward = _activation_kernels(name, z.dtype.str)
    dz = empty(z.shape, z.dtype)
    launch_1d(backward, z.size, flat(dy), flat(z), flat(out), flat(dz))
    return dz
