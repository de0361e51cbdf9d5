"""Import-time compatibility of numba-cuda with this environment, and the backend's probe.

numba-cuda 0.30.4 overloads ``np.row_stack``, which numpy 2.5 removed; :func:`cuda_module` restores the
alias (``np.vstack``) before numba-cuda is imported, so kernels compile with any numpy the ``cuda`` extra
allows and with the numpy 2.5 of some GPU images. It also installs the caching memory pool (:mod:`.runtime.pool`).
"""
import functools
import os

import numpy as np

from ...launch_warnings import quiet_launches

SIMULATOR_VARIABLE = "NUMBA_ENABLE_CUDASIM"


def _restore_row_stack():
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


def cuda_module():
    """``numba.cuda``, imported after the numpy compatibility fix, with the caching memory pool installed
    (:mod:`.runtime.pool`) unless a CUDA context exists already or ``KINN_REF_CUDA_POOL=0``."""
    _restore_row_stack()
    from numba import cuda

    from . import pool
    pool.install()
    return cuda


def nvvm_inlined():
    """Decorator of a device function that NVVM inlines (``forceinline``; the simulator lacks the option)."""
    cuda = cuda_module()
    if simulator_active():
        return cuda.jit(device=True)
    return cuda.jit(device=True, forceinline=True)


def simulator_requested():
    """True when the CUDA simulator was asked for explicitly (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get(SIMULATOR_VARIABLE, "0") == "1"


def simulator_active():
    """True when numba.cuda runs kernels on the CPU simulator."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


@functools.lru_cache(maxsize=None)
def probe():
    """None when the ``cuda`` backend works here, else why not.

    The CUDA simulator counts as working only when ``NUMBA_ENABLE_CUDASIM=1`` is set explicitly (the test
    suite does this); a real GPU must run a test kernel.
    """
    try:
        cuda = cuda_module()
    except ImportError as exc:
        return f"numba-cuda is not installed: {exc} (python -m pip install 'kinn-ref[cuda]')"
    if simulator_active():
        if simulator_requested():
            return None
        return "numba.cuda runs on its simulator, which must be asked for with NUMBA_ENABLE_CUDASIM=1"
    try:
        if not cuda.is_available():
            return f"no CUDA GPU or driver found (numba.cuda.is_available() is False){_numba_cuda_hint()}"
        return _test_kernel(cuda)
    except Exception as exc:  # any failure of the driver or the compiler makes the backend unusable
        return f"CUDA test kernel failed: {type(exc).__name__}: {exc}{_numba_cuda_hint()}"


def _numba_cuda_hint():
    """A note when numba.cuda is numba's own bundled copy, not the numba-cuda package the backend is built on."""
    import importlib.util
    if importlib.util.find_spec("numba_cuda") is not None:
        return ""
    return "; the cuda backend also needs numba-cuda: python -m pip install 'kinn-ref[cuda]'"


@quiet_launches
def _test_kernel(cuda):
    @cuda.jit
    def _twice(a):
        i = cuda.grid(1)
        if i < a.shape[0]:
            a[i] = 2.0 * a[i]

    from . import disk_cache
    disk_cache.enable(_twice)
    d = cuda.to_device(np.arange(4.0))
    _twice[1, 4](d)
    if d.copy_to_host()[3] != 6.0:
        return "a CUDA test kernel computed a wrong value"
    return None


def auto_reason():
    """None when ``backend="auto"`` may pick ``cuda``; the simulator is never picked automatically."""
    reason = probe()
    if reason is not None:
        return reason
    return "numba.cuda runs on its simulator (slow); choose backend='cuda' explicitly" if simulator_active() else None
