"""Scalar device functions per dtype: softplus and its derivative (eq. 8), phi1 and its derivative (eqs. 14, 29).

Each is the twin of the NumPy function of the same name; constants are typed with the computation dtype so
that float32 kernels never promote to float64.
"""
import math
from types import SimpleNamespace

import numpy as np

from kinn_ref.integrators import _PHI1_SERIES

from ..runtime.compat import cuda_module, nvvm_inlined
from ..runtime.device import kernel_cache

cuda = cuda_module()


@kernel_cache
def scalar_functions(dtype):
    """Device functions ``softplus, sigmoid, phi1, phi1_grad`` for ``dtype`` (a dtype string)."""
    f = np.dtype(dtype).type
    zero, one, small = f(0.0), f(1.0), f(0.1)
    series = tuple(f(c) for c in _PHI1_SERIES)
    n_series = len(series)

    @nvvm_inlined()
    def softplus(z):
        """``log(1 + exp(z))`` as ``max(z, 0) + log1p(exp(-|z|))`` (twin of parameterization.softplus)."""
        return max(z, zero) + math.log1p(math.exp(-abs(z)))

    @nvvm_inlined()
    def sigmoid(z):
        """``softplus'(z)`` without overflow (twin of parameterization.softplus_grad)."""
        e = math.exp(-abs(z))
        return one / (one + e) if z >= zero else e / (one + e)

    @nvvm_inlined()
    def phi1(a):
        """``-expm1(-a)/a``, 1 at 0 (twin of integrators.phi1)."""
        return one if a == zero else -math.expm1(-a) / a

    @nvvm_inlined()
    def phi1_grad(a):
        """``(exp(-a) - phi1(a))/a``; Horner series below 0.1 (twin of integrators.phi1_grad)."""
        if abs(a) < small:
            s = zero
            for i in range(n_series):
                s = s * a + series[n_series - 1 - i]
            return s
        return (math.exp(-a) - (-math.expm1(-a) / a)) / a

    return SimpleNamespace(softplus=softplus, sigmoid=sigmoid, phi1=phi1, phi1_grad=phi1_grad)
