"""A caching device-memory pool for numba.cuda (an External Memory Management plugin).

numba allocates every device array with ``cuMemAlloc`` and frees it with ``cuMemFree``, which waits for the
whole device; a forward + backward pass of a large layer allocates hundreds of MiB of outputs and buffers per
call, and on an H200 that costs about as much as the kernels of the uncoupled layer (docs/benchmarks.md).
:class:`CachingMemoryManager` keeps freed blocks in bins by size and hands them to the next allocation of the
same rounded size, as PyTorch's and CuPy's allocators do. A block goes back to its bin when the last device
array referring to it is garbage-collected; it is reused only by later allocations, whose kernels the
default stream orders after every kernel that used it before.

:func:`install` makes it numba's memory manager; it must run before the process creates its CUDA context
(the backend calls it when it is first imported, unless ``KINN_REF_CUDA_POOL=0``). It does nothing under the
simulator or when a context exists already. :func:`release` gives every cached block back to the driver.
Code that frees arrays while kernels on *other* streams may still read them should set
``KINN_REF_CUDA_POOL=0``.
"""
import os
import threading
import warnings

POOL_VARIABLE = "KINN_REF_CUDA_POOL"
#: Allocations are rounded up to a multiple of this many bytes (and of 2 MiB above 16 MiB) to share bins.
SMALL_ROUND = 512
LARGE_ROUND = 2 << 20
LARGE_FROM = 16 << 20


def rounded(size):
    """The bin of an allocation of ``size`` bytes."""
    size = max(int(size), 1)
    step = LARGE_ROUND if size >= LARGE_FROM else SMALL_ROUND
    return -(-size // step) * step


class BlockBins:
    """Free blocks by rounded size: the bookkeeping of the pool, free of any CUDA call.

    ``alloc(nbytes)`` returns ``(block, reused)``: a cached block of the bin, else ``new(nbytes)``; when that
    raises an error ``is_oom`` accepts, every cached block goes to ``free`` and ``new`` is tried once more.
    ``give_back(block, nbytes)`` caches a block; ``drain()`` returns (and forgets) every cached block,
    ``release_all()`` hands them to ``free``.
    """

    def __init__(self, new, free=None, is_oom=lambda exc: False):
        self._new, self._release, self._is_oom = new, free, is_oom
        self._free = {}
        self._lock = threading.Lock()
        self.cached_bytes = 0

    def alloc(self, nbytes):
        with self._lock:
            blocks = self._free.get(nbytes)
            if blocks:
                self.cached_bytes -= nbytes
                return blocks.pop(), True
        try:
            return self._new(nbytes), False
        except Exception as exc:
            if self._release is None or not self._is_oom(exc) or not self.cached_bytes:
                raise
        self.release_all()  # out of memory: hand the cached blocks back and try once more
        return self._new(nbytes), False

    def give_back(self, block, nbytes):
        with self._lock:
            self._free.setdefault(nbytes, []).append(block)
            self.cached_bytes += nbytes

    def drain(self):
        with self._lock:
            out = [b for blocks in self._free.values() for b in blocks]
            self._free.clear()
            self.cached_bytes = 0
        return out

    def release_all(self):
        """Hand every cached block to ``free``."""
        for block in self.drain():
            self._release(block)


#: The CUDA driver's ``CUDA_ERROR_OUT_OF_MEMORY`` (``CUresult`` 2).
CUDA_ERROR_OUT_OF_MEMORY = 2


def is_out_of_memory(exc):
    """Whether ``exc`` is the driver's out-of-memory error (numba-cuda reports a ``CUresult`` enum member,
    numba's bundled ``numba.cuda`` an int: both compare equal to 2)."""
    from numba.cuda.cudadrv import driver as drv
    return isinstance(exc, drv.CudaAPIError) and exc.code == CUDA_ERROR_OUT_OF_MEMORY


def _manager_class():
    import weakref

    from numba.cuda.cudadrv import driver as drv

    class CachingMemoryManager(drv.NumbaCUDAMemoryManager):
        """numba's memory manager with freed device blocks cached for reuse (see the module docstring)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # the driver is looked up per call: numba builds one manager when the pool is installed, before
            # (and whether or not) a driver is there, and with numba's bundled numba.cuda as well
            self.bins = BlockBins(self._cu_alloc, lambda ptr: drv.driver.cuMemFree(ptr), is_out_of_memory)
            self.reused = 0

        def _cu_alloc(self, nbytes):
            # numba's own retry: flush its pending frees (of memory from before the pool) on out-of-memory
            return self._attempt_allocation(lambda: drv.driver.cuMemAlloc(nbytes))

        def memalloc(self, size):
            nbytes = rounded(size)
            ptr, hit = self.bins.alloc(nbytes)
            self.reused += hit
            key = int(ptr)
            bins, allocations = self.bins, self.allocations

            def finalizer():
                allocations.pop(key, None)
                bins.give_back(ptr, nbytes)

            mem = drv.AutoFreePointer(weakref.proxy(self.context), ptr, size, finalizer=finalizer)
            allocations[key] = mem
            return mem.own()

        def release(self):
            """Give every cached block back to the driver (waits for the device)."""
            self.bins.release_all()

        def get_memory_info(self):
            free, total = drv.driver.cuMemGetInfo()
            return drv.MemoryInfo(free=free + self.bins.cached_bytes, total=total)

        def reset(self):
            self.release()
            super().reset()

    return CachingMemoryManager


_installed = False


def install():
    """Make :class:`CachingMemoryManager` numba's memory manager when that can still take effect.

    Returns True when the pool is (or already was) installed.
    """
    global _installed
    if _installed:
        return True
    if os.environ.get(POOL_VARIABLE, "1") == "0":
        return False
    from numba import config
    if config.ENABLE_CUDASIM:
        return False
    if config.CUDA_MEMORY_MANAGER != "default":
        return False  # the user chose a memory manager (NUMBA_CUDA_MEMORY_MANAGER)
    from numba.cuda.cudadrv import driver as drv
    if drv._memory_manager is not None:
        return False  # a context exists already: its manager is fixed
    try:
        drv.set_memory_manager(_manager_class())
    except Exception as exc:  # the pool is an optimisation: never the reason the backend cannot load
        warnings.warn(f"device memory pool not installed ({type(exc).__name__}: {exc}); the cuda backend uses "
                      "numba's default allocator, which frees synchronously and is slower", RuntimeWarning,
                      stacklevel=2)
        return False
    _installed = True
    return True


def manager():
    """The current context's memory manager when it is the pool, else None."""
    if not _installed:
        return None
    from numba import cuda
    mm = cuda.current_context().memory_manager
    return mm if hasattr(mm, "bins") else None


def release():
    """Give the pool's cached blocks back to the driver (no-op without the pool)."""
    mm = manager()
    if mm is not None:
        mm.release()
