"""A lock around the CUDA simulator's static shared-memory allocation.

numba-cuda's simulator (``FakeCUDAShared.array``, checked in 0.68) finds a block's shared array by looking
it up by call site and, when absent, creates and stores it: two threads of a block that switch between the
look-up and the store get separate arrays, and a kernel that shares data through them (the tiled products)
computes wrong values. The window is rare at Python's default 5 ms switch interval and common at the short
interval the tests use; holding a lock over the look-up and the store makes every thread of a block get the
same array, as on a GPU. Dynamic shared memory (``shape == 0``) is one buffer per block already.
"""
import sys
import threading

import numpy as np


def make_shared_arrays_thread_safe():
    """Replace ``FakeCUDAShared.array`` by the same allocation (by call site; dynamic memory from the block's
    buffer) under a lock."""
    from numba.cuda.simulator import kernelapi

    shared = kernelapi.FakeCUDAShared
    if getattr(shared.array, "locked", False):
        return
    original = shared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return original(self, shape, dtype, alignment)  # one buffer per block, or refused
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    array.locked = True
    shared.array = array
