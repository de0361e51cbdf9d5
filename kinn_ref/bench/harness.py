"""Side-by-side timing of the backends, the machine's measured limits, peak memory and compile time.

Timings of one configuration interleave the backends within each repeat, so every repeat compares runs
made under the same machine load; the reported ratios are medians of the per-repeat ratios.
"""
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

from ..functional import backward, forward
from ..parameterization import init_params

logger = logging.getLogger(__name__)


def make_inputs(config, seed=0):
    """Parameters, input and output cotangent of ``config`` (seeded)."""
    rng = np.random.default_rng(seed)
    params = init_params(config.spec, seed=rng, dtype=config.dtype)
    x = rng.standard_normal(config.spec.input_shape(config.batch)).astype(config.dtype)
    width = config.spec.readout_width
    dy = rng.standard_normal((config.batch, width)).astype(config.dtype)
    return params, x, dy


def _kinn_runner(config, backend, checkpoint_every=None):
    params, x, dy = make_inputs(config)
    spec = config.spec

    def run():
        t0 = time.perf_counter()
        _, tape = forward(spec, params, x, backend=backend, checkpoint_every=checkpoint_every)
        t1 = time.perf_counter()
        backward(spec, params, tape, dy)
        return t1 - t0, time.perf_counter() - t1
    return run


def _torch_runner(config, device="cpu"):
    import torch

    from .torch_port import TorchLayer, to_tensors
    params, x, dy = make_inputs(config)
    p = to_tensors(params, device, requires_grad=True)
    xt = to_tensors({"x": x}, device, requires_grad=True)["x"]
    dyt = to_tensors({"dy": dy}, device)["dy"]
    layer = TorchLayer(config.spec, device)

    def run():
        for t in list(p.values()) + [xt]:
            t.grad = None
        t0 = time.perf_counter()
        y = layer.forward(p, xt)
        if device != "cpu":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        y.backward(dyt)
        if device != "cpu":
            torch.cuda.synchronize()
        return t1 - t0, time.perf_counter() - t1
    return run


def runner(config, backend):
    """A callable running one forward + backward of ``config`` on ``backend`` (``"torch"`` is the port);
    it returns ``(forward_seconds, backward_seconds)``."""
    return _torch_runner(config) if backend == "torch" else _kinn_runner(config, backend)


def time_side_by_side(config, backends, repeats):
    """Medians of forward/backward/total seconds per backend and of the per-repeat ratios.

    Parameters
    ----------
    config : BenchConfig
    backends : sequence of str
        The first one is the subject; ratios are ``time(other) / time(subject)``.
    repeats : int

    Returns
    -------
    dict
    """
    runs = {b: runner(config, b) for b in backends}
    for b, run in runs.items():                       # warm-up: compilation, caches, allocator
        run()
    samples = {b: [] for b in backends}
    for _ in range(repeats):
        for b in backends:
            samples[b].append(runs[b]())
        logger.info("%s: %s", config.label, {b: round(sum(s[-1]), 4) for b, s in samples.items()})
    totals = {b: np.array([f + bw for f, bw in s]) for b, s in samples.items()}
    subject = backends[0]
    return {
        "seconds": {b: {"forward": float(np.median([s[0] for s in samples[b]])),
                        "backward": float(np.median([s[1] for s in samples[b]])),
                        "total": float(np.median(totals[b])), "samples": totals[b].tolist()}
                    for b in backends},
        "ratio": {b: float(np.median(totals[b] / totals[subject])) for b in backends if b != subject},
    }


def machine_limits(repeats=5):
    """Measured GEMM throughput (GFLOP/s, NumPy, per dtype) and copy bandwidth (GB/s, read + write)."""
    rng = np.random.default_rng(0)
    out = {}
    for dt in ("float32", "float64"):
        n = 2048
        a, b = rng.standard_normal((n, n)).astype(dt), rng.standard_normal((n, n)).astype(dt)
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
        out[f"gemm_gflops_{dt}"] = 2 * n ** 3 / best / 1e9
    src = np.ones(2 ** 25)                             # 256 MiB
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    out["copy_gbs"] = 2 * src.nbytes / best / 1e9
    return out


@contextlib.contextmanager
def thread_limit(n):
    """Run every backend on ``n`` threads: numba, every loaded BLAS/OpenMP pool and PyTorch."""
    import numba
    import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS the numba kernels call, so it is limited)
    from threadpoolctl import threadpool_limits
    previous = numba.get_num_threads()
    torch = sys.modules.get("torch") or (importlib.import_module("torch")
                                         if importlib.util.find_spec("torch") else None)
    torch_previous = torch.get_num_threads() if torch else None
    numba.set_num_threads(n)
    if torch:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)
        if torch:
            torch.set_num_threads(torch_previous)


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def peak_memory(config, backend, checkpoint_every=None):
    """Peak bytes of array allocations (tracemalloc) during one forward + backward."""
    run = _kinn_runner(config, backend, checkpoint_every)
    run()
    if backend == "numba":          # count the kept-state buffer, which the backend would reuse
        from ..backends.numba_backend.backend import release_state_buffer
        release_state_buffer()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


_COMPILE_PROBE = """
import time, numpy as np
t0 = time.perf_counter()
import kinn_ref as kr
for dt in (np.float32, np.float64):
    spec = kr.LayerSpec(2, 3, order=2, coupling="dense", n_steps=2)
    p = kr.init_params(spec, dtype=dt)
    y, tape = kr.forward(spec, p, np.ones((2, 2), dt), backend="numba")
    kr.backward(spec, p, tape, np.ones_like(y))
print(time.perf_counter() - t0)
"""


def compile_seconds():
    """Seconds from import to the first numba forward + backward of both dtypes, in fresh processes:
    with an empty kernel cache (compilation) and again with the cache it left (loading)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        times = [float(subprocess.run([sys.executable, "-c", _COMPILE_PROBE], env=env, check=True,
                                      capture_output=True, text=True).stdout.split()[-1]) for _ in range(2)]
    return {"cold_cache": times[0], "warm_cache": times[1]}


def machine_description():
    """CPU model, core count, library versions and the 1-minute load average (other work on the machine)."""
    import numba
    info = {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpus": os.cpu_count(), "numba_threads": numba.get_num_threads(), "platform": platform.platform(),
            "load_average": os.getloadavg()[0]}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def write_json(path, data):
    """Write ``data`` as JSON atomically (temporary file, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
