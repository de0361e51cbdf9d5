"""Thread control: BLAS runs single-threaded inside the parallel kernels (the kernels' own threads
call it concurrently; a multi-threaded BLAS would oversubscribe the cores)."""
import contextlib
import functools


@functools.lru_cache(maxsize=None)
def _controller():
    import scipy.linalg.cython_blas  # noqa: F401  (the BLAS the kernels call; load it before scanning)
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


@contextlib.contextmanager
def single_threaded_blas():
    """Limit every loaded BLAS to one thread for the duration of the block."""
    with _controller().limit(limits=1, user_api="blas"):
        yield
