"""The data-parallel device path on a real GPU: one rank (no mpiexec) equals the single-process device step.

Runs only with ``KINN_REF_REAL_CUDA=1`` on a machine with a GPU, CuPy (with NCCL) and mpi4py.
"""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(os.environ.get("KINN_REF_REAL_CUDA") != "1",
                                reason="needs a real GPU (KINN_REF_REAL_CUDA=1)")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("coupling", ["none", "dense"])
def test_one_rank_device_step_equals_single_process(dtype, coupling):
    pytest.importorskip("cupy")
    pytest.importorskip("mpi4py")
    from numba import cuda

    import kinn_ref as kr
    from kinn_ref.backends.cuda_backend import training
    from kinn_ref.scaleout.device_allreduce import NcclAllReduce, data_parallel_train_step
    from kinn_ref.scaleout.mpi import MpiCommunicator
    spec = kr.LayerSpec(4, 16, order=2, coupling=coupling, dt=0.1, n_steps=8)
    params = kr.init_params(spec, seed=0, dtype=dtype)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 4)).astype(dtype)
    t = rng.standard_normal((32, 16)).astype(dtype)
    single = {k: cuda.to_device(v) for k, v in params.items()}
    ranked = {k: cuda.to_device(v) for k, v in params.items()}
    opt_single, opt_ranked = training.DeviceAdam(single, lr=1e-2), training.DeviceAdam(ranked, lr=1e-2)
    reducer = NcclAllReduce(MpiCommunicator())
    dx, dt_ = cuda.to_device(x), cuda.to_device(t)
    for _ in range(4):
        a = training.train_step(spec, single, dx, dt_, opt_single).copy_to_host()
        b = data_parallel_train_step(spec, ranked, dx, dt_, opt_ranked, reducer, 32).copy_to_host()
        assert a.tobytes() == b.tobytes()
    for k in params:
        assert single[k].copy_to_host().tobytes() == ranked[k].copy_to_host().tobytes(), k
