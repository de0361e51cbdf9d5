"""Device arrays and launches: allocation, fills, flat views, launch geometry and the kernel cache."""
from types import SimpleNamespace
import functools
import math

import numpy as np

from . import config, disk_cache
from .compat import cuda_module, simulator_active, nvvm_inlined

cuda = cuda_module()


#: Every cached kernel builder, by qualified name (for resource reports and compile checks).
BUILDERS = {}


@nvvm_inlined()
def block_sum(red, tid):
    """Sum the shared array ``red`` of the block (one entry per thread, a power-of-two length) into ``red[0]``,
    pairwise in a fixed order (the tree of every reduction kernel here); every thread of the block calls it."""
    cuda.syncthreads()
    width = red.shape[0] // 2
    while width > 0:
        if tid < width:
            red[tid] += red[tid + width]
        cuda.syncthreads()
        width //= 2


def kernel_cache(builder):
    """Cache the kernels ``builder(*args)`` returns, keyed by its arguments and the tunables of :mod:`config`,
    in this process and on disk (:mod:`.runtime.disk_cache`)."""
    cache = {}
    name = f"{builder.__module__}.{builder.__qualname__}"

    @functools.wraps(builder)
    def get(*args):
        k = (args, config.key())
        if k not in cache:
            with disk_cache.building((name, k)):
                cache[k] = disk_cache.enable(builder(*args))
        return cache[k]

    get.cache = cache
    BUILDERS[name] = get
    return get


def is_device_array(a):
    """True for a numba device array (or its simulator twin)."""
    return bool(getattr(a, "__cuda_ndarray__", False))


def empty(shape, dtype):
    """An uninitialised device array."""
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def zeros(shape, dtype):
    """A device array of zeros, filled on the device (no host copy)."""
    out = empty(shape, dtype)
    fill(out, 0)
    return out


def flat(a):
    """A 1-D view of a C-contiguous device array."""
    return a.reshape(a.size)


@kernel_cache
def _fill_kernel(dtype):
    cast = np.dtype(dtype).type

    @cuda.jit
    def fill_kernel(a, value):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < a.shape[0]:
            a[i] = value
            i += stride

    return SimpleNamespace(fill_kernel=fill_kernel, cast=cast)


def fill(a, value):
    """Set every element of the contiguous device array ``a`` to ``value``."""
    if a.size == 0:
        return a
    built = _fill_kernel(a.dtype.str)
    kern, cast = built.fill_kernel, built.cast
    launch_1d(kern, a.size, flat(a), cast(value))
    return a


def copy(src, dst=None):
    """Copy the contiguous device array ``src`` into ``dst`` (a new array when omitted) on the device.

    One device-to-device memory copy, ordered with the kernels on the default stream: on an H200 the nine copies
    of a forward pass's inputs cost 0.2 ms of host time this way, against 0.8-1.0 ms as copy kernels (one
    allocation and launch each) and 1.1-1.4 ms through numba's ``copy_to_device`` (docs/benchmarks.md)."""
    dst = empty(src.shape, src.dtype) if dst is None else dst
    if src.size:
        if simulator_active():
            dst.copy_to_device(src)
        else:
            from numba.cuda.cudadrv import driver
            driver.device_to_device(dst, src, src.size * src.dtype.itemsize)
    return dst


@kernel_cache
def _transpose_kernel(dtype):
    @cuda.jit
    def transpose_kernel(src, dst):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        rows, cols = src.shape[0], src.shape[1]
        while i < rows * cols:
            r = i // cols
            c = i - r * cols
            dst[c, r] = src[r, c]
            i += stride

    return transpose_kernel


def transposed(a):
    """A new C-contiguous device array holding the transpose of the 2-D device array ``a``."""
    out = empty((a.shape[1], a.shape[0]), a.dtype)
    if a.size:
        launch_1d(_transpose_kernel(a.dtype.str), a.size, a, out)
    return out


@functools.lru_cache(maxsize=None)
def multiprocessors():
    """Multiprocessors of the current device (1 under the simulator)."""
    if simulator_active():
        return 1
    return cuda.get_current_device().MULTIPROCESSOR_COUNT


def launch_1d(kern, n, *args):
    """Launch a grid-stride 1-D kernel over ``n`` items."""
    tpb = config.FLAT_BLOCK
    blocks = max(1, min(math.ceil(n / tpb), 32 * multiprocessors()))
    kern[blocks, tpb](*args)


def node_grid(n_nodes, batch):
    """Launch geometry of the node-parallel kernels: ``(grid, block)``.

    Threads are laid out (nodes, batch rows); each thread walks the batch with a stride so that every block
    along the batch reduces its own rows, and the number of batch blocks keeps about
    ``THREADS_PER_SM * multiprocessors`` threads in flight.
    """
    tx, ty = config.NODE_BLOCK
    gx = math.ceil(n_nodes / tx)
    target = config.THREADS_PER_SM * multiprocessors()
    gy = max(1, min(math.ceil(batch / ty), math.ceil(target / (gx * tx * ty))))
    return (gx, gy), (tx, ty)


def scalar(dtype, value):
    """``value`` as a NumPy scalar of ``dtype`` (kernel arguments must not promote float32 to float64)."""
    return np.dtype(dtype).type(value)


def new_flag():
    """A device int32 (1,) holding the largest int32: the "no non-finite state" code (atomic-min target)."""
    return fill(empty((1,), np.int32), np.iinfo(np.int32).max)


@kernel_cache
def _axpby_kernel(dtype):
    @cuda.jit
    def axpby(a, X, b, Y, out):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < out.shape[0]:
            out[i] = a * X[i] + b * Y[i]
            i += stride

    return axpby


def axpby(a, X, b, Y, out=None):
    """``out = a X + b Y`` elementwise for contiguous device arrays of one shape."""
    out = empty(X.shape, X.dtype) if out is None else out
    launch_1d(_axpby_kernel(X.dtype.str), X.size, scalar(X.dtype, a), flat(X), scalar(X.dtype, b), flat(Y),
              flat(out))
    return out


def max_shared_per_block():
    """Largest dynamic shared memory a block may use on this device after opting in (bytes)."""
    if simulator_active():
        return 1 << 30
    return cuda.get_current_device().MAX_SHARED_MEMORY_PER_BLOCK_OPTIN


def allow_shared(kern, args, nbytes):
    """Let ``kern`` (compiled for ``args``) use ``nbytes`` of dynamic shared memory (above 48 KiB the CUDA
    driver requires an explicit opt-in per kernel)."""
    if simulator_active() or nbytes <= 48 * 1024:
        return
    from numba import typeof
    from numba.cuda.cudadrv.driver import binding, driver
    overload = kern.compile(tuple(typeof(a) for a in args))
    cufunc = overload._codelibrary.get_cufunc()
    attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    driver.cuKernelSetAttribute(attr, int(nbytes), cufunc.handle, cufunc.device.id)
