"""First forward + backward of one GPU benchmark case in this process, timed (docs/benchmarks.md).

Run each case in a fresh process, e.g. with empty caches::

    CUDA_CACHE_PATH=$(mktemp -d) KINN_REF_CUDA_CACHE_DIR=$(mktemp -d) python -m kinn_ref.bench.gpu_cold dense128

and again with the same ``KINN_REF_CUDA_CACHE_DIR`` for the warm cache. Prints one JSON line: seconds for the
import, the first forward, the first backward, the total since the process started, and a second
forward + backward.
"""
import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

from ..functional import backward, forward  # noqa: E402
from ..spec import LayerSpec  # noqa: E402
from .gpu import GpuConfig, gpu_configs, make_inputs  # noqa: E402

#: Cases besides the benchmark's: second-order uncoupled and dense layers with RK4 and the derivative readout,
#: an implicit grid.
EXTRA = {
    "cell_rk4_deriv": LayerSpec(32, 256, order=2, coupling="none", integrator="rk4", readout="derivatives",
                                n_steps=32),
    "dense_rk4_deriv": LayerSpec(32, 128, order=2, coupling="dense", integrator="rk4", readout="derivatives",
                                 n_steps=16),
    "grid_implicit": LayerSpec(4, 64, order=1, coupling="grid", grid_shape=(4096,), boundary="periodic",
                               integrator="implicit", n_steps=16),
}


def main(argv=None):
    cases = {c.name: c.spec for c in gpu_configs()} | EXTRA
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(cases))
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    spec = cases[args.case]
    params, x, _ = make_inputs(GpuConfig(args.case, spec, args.batch, {}))
    t_import = time.perf_counter() - _T0
    t1 = time.perf_counter()
    y, tape = forward(spec, params, x, backend="cuda")
    t2 = time.perf_counter()
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(y.dtype)
    backward(spec, params, tape, dy)
    t3 = time.perf_counter()
    y, tape = forward(spec, params, x, backend="cuda")
    backward(spec, params, tape, dy)
    t4 = time.perf_counter()
    print(json.dumps({"case": args.case, "import_s": round(t_import, 2), "forward_s": round(t2 - t1, 2),
                      "backward_s": round(t3 - t2, 2), "total_s": round(t3 - _T0, 2),
                      "second_s": round(t4 - t3, 3)}))


if __name__ == "__main__":
    main()
