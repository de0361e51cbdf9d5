"""The ``numba`` backend: compiled CPU kernels, parallel over the batch (docs/backends.md).

Same functional contract and tape semantics as the NumPy reference (:mod:`kinn_ref.reference`). Each
compiled function is a named twin of a reference function; docs/backends.md lists the pairs.
"""
import functools

from ..launch_warnings import quiet_launches


@functools.lru_cache(maxsize=None)
def probe():
    """None when numba and threadpoolctl import and a tiny parallel kernel compiles and runs, else why not."""
    try:
        import numpy as np
        from numba import njit, prange
        import threadpoolctl  # noqa: F401  (BLAS thread control of the kernels)
    except ImportError as exc:
        return f"not installed: {exc} (numba and threadpoolctl are dependencies of kinn-ref: python -m pip install kinn-ref)"

    @njit(parallel=True)
    def _twice(a):
        out = np.empty_like(a)
        for i in prange(a.shape[0]):
            out[i] = 2.0 * a[i]
        return out

    if quiet_launches(_twice)(np.arange(4.0))[3] != 6.0:
        return "a test kernel computed a wrong value"
    return None


def load():
    """The backend module (``forward``/``backward``); kernels compile, or load from cache, on first use."""
    from . import backend
    return backend
