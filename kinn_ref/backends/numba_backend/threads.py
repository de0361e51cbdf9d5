"""Thread control: BLAS runs single-threaded inside the pass kernels (the kernels' own threads
call it concurrently; a multi-threaded BLAS would oversubscribe the cores, and its thread count could
change the order of a product's sums).

threadpoolctl finds the loaded BLAS libraries once; each pass then reads and sets their thread counts
directly (a few microseconds), where ``ThreadpoolController.limit`` re-reads the description of every
library on each call (about 0.1 ms, a tenth of a small layer's pass).
"""
import contextlib
import functools
import threading

_LOCK = threading.Lock()
_STATE = {"depth": 0, "saved": ()}


@functools.lru_cache(maxsize=None)
def _blas_libraries():
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the kernels call; load it before scanning)
    from threadpoolctl import ThreadpoolController
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def single_threaded_blas():
    """Limit every loaded BLAS to one thread for the duration of the block.

    Blocks may nest and may run in several threads at once: the first to enter saves each library's
    thread count and sets it to one, the last to leave restores it.
    """
    with _LOCK:
        if _STATE["depth"] == 0:
            saved = []
            for lib in _blas_libraries():
                count = lib.num_threads
                if count != 1:
                    lib.set_num_threads(1)
                    saved.append((lib, count))
            _STATE["saved"] = tuple(saved)
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            if _STATE["depth"] == 0:
                for lib, count in _STATE["saved"]:
                    lib.set_num_threads(count)
                _STATE["saved"] = ()
