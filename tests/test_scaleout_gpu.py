"""The data-parallel device path on a real GPU: one rank (no mpiexec) equals the single-process device step,
and ``kinn-ref train --backend cuda --distributed mpi`` under mpiexec equals the single-process cuda training.

Runs only with ``KINN_REF_REAL_CUDA=1`` on a machine with a GPU, CuPy (with NCCL) and mpi4py.
"""
import json
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
    from kinn_ref.backends.cuda_backend.training import step as training
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


def _mpiexec():
    import shutil
    import sys
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))


def _train(out, ranks, task, model, extra):
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).parent.parent)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "kinn_ref.cli", "train", "--task", task, "--model", model, "--epochs", "2",
           "--out", str(out), "--no-progress", "--backend", "cuda", *extra]
    if ranks:
        cmd = [_mpiexec(), "-n", str(ranks), *cmd, "--distributed", "mpi"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("task,model,extra", [
    ("oscillator", "kinn-k2", ("--guard",)),
    ("digits", "kinn", ("--clip-norm", "1.0", "--penalty", "0.01")),
    ("burgers", "kinn", ()),
    ("burgers", "kinn-grid", ()),
    ("burgers", "mlp", ("--optimizer", "sgd", "--lr", "0.01"))])
def test_device_training_equals_single_process_cuda_training(tmp_path, ranks, task, model, extra):
    """``mpiexec -n R kinn-ref train --backend cuda --distributed mpi`` (the whole step on the GPU, NCCL) against
    ``kinn-ref train --backend cuda`` (the host trainer): the parameters after 2 epochs, float64 relative 1e-11."""
    pytest.importorskip("cupy")
    pytest.importorskip("mpi4py")
    if _mpiexec() is None:
        pytest.skip("no mpiexec")
    from numba import cuda
    if len(cuda.gpus) < ranks:
        pytest.skip(f"{ranks} ranks need {ranks} GPUs (NCCL takes one GPU per rank)")
    from helpers import rel_error
    from kinn_ref.training.checkpoint import load_checkpoint
    single = _train(tmp_path / "single", 0, task, model, extra)
    assert single.returncode == 0, single.stderr[-3000:]
    ranked = _train(tmp_path / "ranked", ranks, task, model, extra)
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    a = load_checkpoint(tmp_path / "single" / "checkpoint.npz")
    b = load_checkpoint(tmp_path / "ranked" / "checkpoint.npz")
    assert b.meta["extra"]["ranks"] == ranks and b.epoch == 2
    errors = {k: rel_error(b.params[k], a.params[k]) for k in a.params}
    seconds = [json.loads((tmp_path / run / "result.json").read_text())["train_seconds"]
               for run in ("single", "ranked")]
    print(f"\n{task} {model} ranks={ranks}: largest relative error {max(errors.values()):.2e}; training "
          f"{seconds[0]:.2f} s single process, {seconds[1]:.2f} s device step")
    assert max(errors.values()) <= 1e-11, errors
