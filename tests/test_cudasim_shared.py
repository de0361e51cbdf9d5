"""The simulator's shared arrays under the tests' short switch interval (see tests/cudasim_shared.py)."""
import os

import numpy as np
import pytest
from numba import cuda

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="simulator only")

N = 48  # threads of a block, and the length of each shared array


def test_every_thread_of_a_block_shares_each_static_array_and_two_arrays_do_not_alias():
    @cuda.jit
    def kernel(out):
        a = cuda.shared.array(N, np.float64)
        b = cuda.shared.array(N, np.float64)
        t = cuda.threadIdx.x
        a[t] = t
        b[t] = 2.0 * t
        cuda.syncthreads()
        sa = 0.0
        sb = 0.0
        for i in range(N):
            sa += a[i]
            sb += b[i]
        out[cuda.blockIdx.x, t, 0] = sa
        out[cuda.blockIdx.x, t, 1] = sb

    out = np.zeros((2, N, 2))
    for _ in range(3):
        kernel[2, N](out)
        total = N * (N - 1) / 2
        np.testing.assert_array_equal(out[..., 0], total)
        np.testing.assert_array_equal(out[..., 1], 2 * total)
