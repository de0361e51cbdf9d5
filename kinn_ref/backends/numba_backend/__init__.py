"""The ``numba`` backend: compiled CPU kernels, run on several threads over the batch (docs/backends.md).

Same functional contract and tape semantics as the NumPy reference (:mod:`kinn_ref.reference`). Each
compiled function is a named twin of a reference function; docs/backends.md lists the pairs.
"""
import functools


@functools.lru_cache(maxsize=None)
def probe():
    """None when numba and threadpoolctl import and a tiny kernel of the kind the backend runs (``nogil``, on
    numba's thread count) compiles and runs, else why not."""
    try:
        import numba
        import numpy as np
        import threadpoolctl  # noqa: F401  (BLAS thread control of the kernels)
    except ImportError as exc:
        return (f"not installed: {exc} (numba and threadpoolctl are dependencies of kinn-ref: "
                "python -m pip install kinn-ref)")

    @numba.njit(nogil=True, cache=True)
    def _twice(a):
        out = np.empty_like(a)
        for i in range(a.shape[0]):
            out[i] = 2.0 * a[i]
        return out

    if numba.get_num_threads() < 1 or _twice(np.arange(4.0))[3] != 6.0:
        return "a test kernel computed a wrong value"
    return None


def load():
    """The backend module (``forward``/``backward``); kernels compile, or load from cache, on first use."""
    from . import backend
    return backend
