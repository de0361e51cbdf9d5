"""The caching device-memory pool of the ``cuda`` backend (:mod:`kinn_ref.backends.cuda_backend.runtime.pool`).

The bookkeeping runs anywhere; the pool itself only on a real GPU (``KINN_REF_REAL_CUDA=1``).
"""
import gc
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

from kinn_ref.backends.cuda_backend.runtime import pool  # noqa: E402
from kinn_ref.backends.cuda_backend.runtime.compat import simulator_active  # noqa: E402


def test_rounded_bins():
    assert pool.rounded(0) == pool.SMALL_ROUND
    assert pool.rounded(1) == pool.SMALL_ROUND
    assert pool.rounded(pool.SMALL_ROUND) == pool.SMALL_ROUND
    assert pool.rounded(pool.SMALL_ROUND + 1) == 2 * pool.SMALL_ROUND
    big = pool.LARGE_FROM + 1
    assert pool.rounded(big) % pool.LARGE_ROUND == 0 and pool.rounded(big) >= big


def test_block_bins_reuse_by_size():
    made = []

    def new(nbytes):
        made.append(nbytes)
        return f"block{len(made)}"

    bins = pool.BlockBins(new)
    a, hit = bins.alloc(1024)
    assert (a, hit) == ("block1", False)
    bins.give_back(a, 1024)
    assert bins.cached_bytes == 1024
    b, hit = bins.alloc(2048)  # another bin: a new block
    assert (b, hit) == ("block2", False)
    c, hit = bins.alloc(1024)  # the cached one
    assert (c, hit) == ("block1", True) and bins.cached_bytes == 0
    bins.give_back(b, 2048)
    bins.give_back(c, 1024)
    assert sorted(bins.drain()) == ["block1", "block2"]
    assert bins.cached_bytes == 0 and bins.alloc(1024) == ("block3", False)


def test_block_bins_release_cached_blocks_when_out_of_memory():
    class OOM(Exception):
        pass

    budget = {"free": 3}
    freed = []

    def new(nbytes):
        if budget["free"] < nbytes:
            raise OOM()
        budget["free"] -= nbytes
        return f"block{nbytes}"

    def free(block):
        freed.append(block)
        budget["free"] += int(block[5:])

    bins = pool.BlockBins(new, free, is_oom=lambda exc: isinstance(exc, OOM))
    a, _ = bins.alloc(2)
    bins.give_back(a, 2)  # cached: the driver still counts it as used
    b, reused = bins.alloc(3)  # does not fit: the cached block is released, then it fits
    assert (b, reused) == ("block3", False) and freed == ["block2"] and bins.cached_bytes == 0
    with pytest.raises(OOM):  # nothing cached to release: the error stands
        bins.alloc(1)
    plain = pool.BlockBins(new)
    with pytest.raises(OOM):
        plain.alloc(10)


def test_manager_and_out_of_memory_check_need_no_driver():
    """Without the simulator and whether or not a GPU is there: the manager builds with ``context=None`` (as
    numba does when the pool is installed) and recognises the driver's out-of-memory error by its code."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("from numba.cuda.cudadrv import driver as drv\n"
            "from kinn_ref.backends.cuda_backend.runtime import pool\n"
            "assert pool._manager_class()(context=None).bins.cached_bytes == 0\n"
            "assert pool.is_out_of_memory(drv.CudaAPIError(2, 'out of memory'))\n"
            "assert not pool.is_out_of_memory(drv.CudaAPIError(1, 'invalid value'))\n"
            "assert not pool.is_out_of_memory(MemoryError('host'))\n"
            "binding = getattr(drv, 'binding', None)\n"
            "if binding is not None:  # numba-cuda reports a CUresult enum member\n"
            "    assert pool.is_out_of_memory(drv.CudaAPIError(binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY, 'x'))\n"
            "print('OK')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OK"


@pytest.mark.skipif(simulator_active(), reason="the pool manages real device memory only")
def test_pool_reuses_freed_blocks_on_the_gpu():
    from numba import cuda
    mm = pool.manager()
    if mm is None:
        pytest.skip("the pool is not installed in this process (a context existed first, or KINN_REF_CUDA_POOL=0)")
    a = cuda.to_device(np.arange(1000, dtype=np.float32))
    ptr = a.device_ctypes_pointer.value
    del a
    gc.collect()
    before = mm.reused
    b = cuda.device_array(1000, dtype=np.float32)
    assert mm.reused == before + 1 and b.device_ctypes_pointer.value == ptr
    b.copy_to_device(np.full(1000, 3.0, np.float32))
    assert np.all(b.copy_to_host() == 3.0)
    del b
    gc.collect()
    pool.release()
    assert mm.bins.cached_bytes == 0
