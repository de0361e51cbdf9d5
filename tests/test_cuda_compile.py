"""Every kernel the cuda backend launches compiles for Hopper (sm_90), checked without a GPU.

The simulator never compiles kernels (:mod:`kinn_ref.backends.cuda_backend.diagnostics.ptx_check`): a workload covering
every family, coupling, integrator, readout and dtype is recorded on the simulator in one process and its
kernels compiled to PTX in another. Needs NVVM and NVRTC (e.g. ``pip install nvidia-nvvm nvidia-cuda-nvrtc``
and ``CUDA_HOME`` pointing at them); skipped otherwise.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RECORD = """
import pickle, sys
import numpy as np
import kinn_ref as kr
from helpers import make_case
from kinn_ref.backends.cuda_backend.diagnostics.ptx_check import recording
with recording() as records:
    for dtype in (np.float64, np.float32):
        for coupling in ("none", "dense", "kirchhoff", "grid1d-periodic", "grid2d-neumann"):
            for integrator in kr.spec.INTEGRATORS:
                for order in (1, 2):
                    spec, params, x, V0 = make_case(coupling, integrator, "last" if order == 1 else "derivatives",
                                                    order=order, dtype=dtype, sequence=order == 2,
                                                    return_sequences=order == 2, batch=2, n_steps=2)
                    y, tape = kr.forward(spec, params, x, V0, backend="cuda", checkpoint_every=order)
                    kr.backward(spec, params, tape, np.ones_like(y))
    spec, params, x, _ = make_case("none", "expeuler", "cells", in_features=40, batch=2, n_steps=2)
    y, tape = kr.forward(spec, params, x, backend="cuda")
    kr.backward(spec, params, tape, np.ones_like(y))
    # the device training step: every activation, loss and optimizer, clipping, both dtypes
    from kinn_ref.scaleout.device_allreduce import SingleProcessSum
    from kinn_ref.scaleout.device_training import DeviceDataParallelTrainer

    class SingleRank:
        rank, size, local_rank, local_size, is_root = 0, 1, 0, 1, True

        def shard(self, n):
            return 0, n
    rng = np.random.default_rng(0)
    for dtype in ("float64", "float32"):
        for activation, loss, optimizer in [("relu", "mse", "sgd"), ("tanh", "relative_l2", "adam"),
                                            ("sigmoid", "cross_entropy", "adamw"), ("softplus", "mse", "adam")]:
            config = {"model": "kinn", "input_dim": 3, "hidden_dims": [2], "output_dim": 2, "n_steps": 2,
                      "head": True, "activation": activation, "dtype": dtype}
            trainer = DeviceDataParallelTrainer(config, loss=loss, optimizer=optimizer, clip_norm=1.0,
                                                backend="cuda", progress=False, batch_size=2,
                                                communicator=SingleRank(), reducer=SingleProcessSum())
            y = rng.integers(0, 2, 2) if loss == "cross_entropy" else rng.standard_normal((2, 2))
            trainer.fit(rng.standard_normal((2, 3)), y, 1, validation=(rng.standard_normal((2, 3)), y))
        config = {"model": "kinn", "input_dim": 2, "hidden_dims": [], "output_dim": 1, "n_steps": 2, "head": True,
                  "dtype": dtype, "options": {"coupling": "grid", "grid_shape": [3], "order": 2, "readout": "cells"}}
        trainer = DeviceDataParallelTrainer(config, penalty=0.1, backend="cuda", progress=False, batch_size=2,
                                            communicator=SingleRank(), reducer=SingleProcessSum())
        trainer.fit(rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 1)), 1)
pickle.dump(records, open(sys.argv[1], "wb"))
"""

COMPILE = """
import json, pickle, sys
from kinn_ref.backends.cuda_backend.runtime.compat import cuda_module
from kinn_ref.backends.cuda_backend.diagnostics.ptx_check import compile_records
cuda = cuda_module()
try:
    cuda.compile_ptx(lambda a: None, "void(float32[:])", cc=(9, 0))
except Exception as exc:
    print(json.dumps({"skip": f"{type(exc).__name__}: {exc}"}))
    raise SystemExit
print(json.dumps({"results": compile_records(pickle.load(open(sys.argv[1], "rb")))}))
"""


@pytest.mark.slow
def test_every_launched_kernel_compiles_for_sm90(tmp_path):
    records = tmp_path / "records.pkl"
    # kinn_ref comes from the installed package (kinn_ref.analysis is mapped there, not in the source tree)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests"))
    sim = dict(env, NUMBA_ENABLE_CUDASIM="1")
    subprocess.run([sys.executable, "-c", RECORD, str(records)], env=sim, check=True, timeout=3000)
    real = {k: v for k, v in env.items() if k != "NUMBA_ENABLE_CUDASIM"}
    out = subprocess.run([sys.executable, "-c", COMPILE, str(records)], env=real, capture_output=True, text=True,
                         timeout=3000)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(f"no NVVM to compile with: {report['skip']}")
    results = report["results"]
    assert len(results) > 50
    errors = [r for r in results if r["error"]]
    assert not errors, "\n".join(f"{r['builder']}{r['args']}.{r['kernel']}: {r['error'][:400]}" for r in errors)
    spills = [r for r in results if r.get("spill_store_bytes")]
    assert not spills, spills
