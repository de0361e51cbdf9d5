"""GPU benchmark of the ``cuda`` backend (``kinn-ref bench --backend cuda``): forward + backward in float32
side by side with the PyTorch port (:mod:`kinn_ref.bench.torch_port`) on the same GPU, eager and under
``torch.compile``, after checking that they compute the same thing.

Per configuration: the inputs are drawn at random (seeded); the cuda backend runs on device arrays
(:func:`~kinn_ref.backends.cuda_backend.backend.forward_device` / ``backward_device``), PyTorch on tensors
with autograd; each is timed with its own CUDA events after a warm-up, and the median of the repeats is
reported. Results are checked first: the cuda backend against PyTorch float32 on the full problem, and
both against PyTorch float64 on the first rows of the batch. The floor of each case is the larger of
its counted bytes over the measured device copy bandwidth and its counted FLOPs over the measured fp32
matrix-product rate. The report also lists the compiled kernels' resources (registers, local and shared
memory per thread/block) and the host-device copies made by a device-resident training step.
"""
import datetime
import logging
import shlex
import sys
import time
from dataclasses import dataclass

import numpy as np

from ..parameterization import init_params
from ..spec import LayerSpec
from ..tolerances import relative_error

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuConfig:
    """One GPU benchmark case (float32).

    Attributes
    ----------
    name : str
    spec : LayerSpec
    batch : int
    goals : dict
        Minimum ratios ``time(other) / time(cuda)`` for ``"eager"`` and ``"compile"``, and the largest
        allowed ``time(cuda) / floor`` under ``"floor"``.
    """

    name: str
    spec: LayerSpec
    batch: int
    goals: dict

    def flops(self):
        """FLOPs of one forward + backward, counted as the work the mathematics needs.

        Per cell, step and node: exponential Euler forward 4 (two multiply-adds) and backward 10 (the
        gradient sums and the cotangent update); a grid adds its stencil, 3 forward and 6 backward. A dense
        or kirchhoff coupling adds three ``B x N x N`` products per cell and step (forward coupling, adjoint,
        gradient). The projection costs ``2 R H D`` forward and twice that backward (``R`` rows of ``x``).
        """
        s, B = self.spec, self.batch
        T, K, N, H, D = s.n_steps, s.order, s.total_nodes, s.n_nodes, s.in_features
        per_node = 14 + (9 if s.coupling == "grid" else 0)
        total = T * K * B * N * per_node + 6 * B * s.n_points * H * D
        if s.coupling in ("dense", "kirchhoff"):
            total += 3 * T * K * 2 * B * N * N
        return total

    def bytes_moved(self):
        """Fewest bytes one forward + backward must move: ``x``, ``y``, ``dy`` and ``dx`` once each (float32)."""
        s, B = self.spec, self.batch
        return 4 * (2 * B * s.n_points * s.in_features + 2 * B * s.readout_width)


def gpu_configs():
    """The GPU cases of docs/benchmarks.md (float32, exponential Euler)."""
    return [
        GpuConfig("cell", LayerSpec(32, 256, order=2, coupling="none", n_steps=32), 262144,
                  {"eager": 50.0, "compile": 3.0, "floor": 2.0}),
        GpuConfig("dense128", LayerSpec(32, 128, order=1, coupling="dense", n_steps=16), 65536, {"eager": 2.0}),
        GpuConfig("dense1024", LayerSpec(32, 1024, order=1, coupling="dense", n_steps=16), 65536,
                  {"eager": 1 / 1.5}),
        GpuConfig("grid", LayerSpec(4, 64, order=1, coupling="grid", grid_shape=(4096,), boundary="periodic",
                                    n_steps=16), 1024, {"eager": 5.0}),
    ]


def make_inputs(config, seed=0, dtype=np.float32):
    """Random parameters (every array away from zero), input and output cotangent of ``config``."""
    rng = np.random.default_rng(seed)
    spec = config.spec
    p = init_params(spec, seed=rng, dtype=np.float64)
    p["b"] = 0.1 * rng.standard_normal(p["b"].shape)
    p["leak"] = 0.1 * rng.standard_normal(p["leak"].shape)
    p["beta"] = 1.0 + 0.1 * rng.standard_normal(p["beta"].shape)
    params = {k: v.astype(dtype) for k, v in p.items()}
    x = rng.standard_normal(spec.input_shape(config.batch)).astype(dtype)
    dy = rng.standard_normal((config.batch, spec.readout_width)).astype(dtype)
    return params, x, dy


# ---- the cuda backend ---------------------------------------------------------------------------------

def cuda_runner(config, params, x, dy):
    """``run() -> (forward_ms, backward_ms, (y, grads))`` on device arrays, timed with CUDA events."""
    from ..backends.cuda_backend import backend
    from ..backends.cuda_backend.runtime.compat import cuda_module
    cuda = cuda_module()
    dparams = backend.to_device(params)
    dx, ddy = cuda.to_device(x), cuda.to_device(dy)
    events = [cuda.event() for _ in range(3)]

    def run():
        events[0].record()
        y, tape = backend.forward_device(config.spec, dparams, dx)
        events[1].record()
        grads = backend.backward_device(config.spec, dparams, tape, ddy)
        events[2].record()
        events[2].synchronize()
        return events[0].elapsed_time(events[1]), events[1].elapsed_time(events[2]), (y, grads)
    return run


# ---- PyTorch --------------------------------------------------------------------------------------------

def torch_runner(config, params, x, dy, compiled=False, dtype="float32"):
    """``run() -> (forward_ms, backward_ms, (y, grads))`` of the PyTorch port on the GPU."""
    import torch

    from .torch_port import TorchLayer, to_tensors
    cast = {k: v.astype(dtype) for k, v in params.items()}
    p = to_tensors(cast, "cuda", requires_grad=True)
    xt = to_tensors({"x": x.astype(dtype)}, "cuda", requires_grad=True)["x"]
    dyt = to_tensors({"dy": dy.astype(dtype)}, "cuda")["dy"]
    layer = TorchLayer(config.spec, "cuda")
    fn = torch.compile(layer.forward) if compiled else layer.forward
    events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]

    def run():
        for t in list(p.values()) + [xt]:
            t.grad = None
        events[0].record()
        y = fn(p, xt)
        events[1].record()
        y.backward(dyt)
        events[2].record()
        events[2].synchronize()
        grads = {k: (t.grad if t.grad is not None else torch.zeros_like(t)) for k, t in p.items()}
        grads["x"] = xt.grad
        return events[0].elapsed_time(events[1]), events[1].elapsed_time(events[2]), (y.detach(), grads)
    return run


def device_limits():
    """Measured device copy bandwidth (GB/s, bytes read + written) and fp32 product rate (GFLOP/s, no TF32)."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    src = torch.randn(2 ** 28, device="cuda")          # 1 GiB
    dst = torch.empty_like(src)
    n = 8192
    a, b = torch.randn(n, n, device="cuda"), torch.randn(n, n, device="cuda")

    def best(fn, reps=10):
        fn()
        times = []
        for _ in range(reps):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1) / 1e3)
        return float(np.median(times))

    copy_s, gemm_s = best(lambda: dst.copy_(src)), best(lambda: torch.mm(a, b))
    out = {"copy_gbs": 2 * src.numel() * 4 / copy_s / 1e9, "fp32_gflops": 2 * n ** 3 / gemm_s / 1e9,
           "device": torch.cuda.get_device_name(0)}
    torch.cuda.empty_cache()
    return out


def _median_times(run, repeats, warmup):
    for _ in range(warmup):
        run()
    fwd, bwd, last = [], [], None
    for _ in range(repeats):
        f, b, last = run()
        fwd.append(f)
        bwd.append(b)
    tot = [f + b for f, b in zip(fwd, bwd)]
    return {"forward_ms": float(np.median(fwd)), "backward_ms": float(np.median(bwd)),
            "total_ms": float(np.median(tot)), "samples_ms": tot}, last


def _to_numpy(out):
    y, grads = out
    conv = (lambda a: a.detach().cpu().numpy()) if hasattr(y, "detach") else (lambda a: a.copy_to_host())
    return conv(y), {k: conv(v) for k, v in grads.items()}


def check(config, cuda_out, torch_out, params, x, dy, rows=2048):
    """Relative differences: cuda vs PyTorch float32 (full problem); both vs PyTorch float64 on ``rows``."""
    import torch
    yc, gc = _to_numpy(cuda_out)
    yt, gt = _to_numpy(torch_out)
    result = {"y_vs_torch32": relative_error(yc, yt),
              "grads_vs_torch32": {k: relative_error(gc[k], gt[k]) for k in gt}}
    sub = min(rows, config.batch)
    small = GpuConfig(config.name, config.spec, sub, config.goals)
    ref = torch_runner(small, params, x[:sub], dy[:sub], dtype="float64")
    _, _, ref_out = ref()
    y64, g64 = _to_numpy(ref_out)
    c = cuda_runner(small, params, x[:sub], dy[:sub])
    t = torch_runner(small, params, x[:sub], dy[:sub])
    yc_s, gc_s = _to_numpy(c()[2])
    yt_s, gt_s = _to_numpy(t()[2])
    result["cuda_vs_torch64"] = max([relative_error(yc_s, y64)]
                                    + [relative_error(gc_s[k], g64[k]) for k in g64])
    result["torch32_vs_torch64"] = max([relative_error(yt_s, y64)]
                                       + [relative_error(gt_s[k], g64[k]) for k in g64])
    del ref, c, t
    torch.cuda.empty_cache()
    return result


def kernel_resources():
    """Registers and local memory per thread, static shared memory per block, of every compiled kernel."""
    from ..backends.cuda_backend.runtime.device import BUILDERS
    from ..backends.cuda_backend.diagnostics.ptx_check import kernels_in
    out = []
    for name, builder in BUILDERS.items():
        for key, built in builder.cache.items():
            for kern in kernels_in(built):
                for ovl in kern.overloads.values():
                    if not hasattr(ovl, "regs_per_thread"):
                        continue  # a device function compiled in this process: part of the kernels that call it
                    out.append({"builder": name.rsplit(".", 2)[-2] + "." + name.rsplit(".", 1)[-1],
                                "kernel": kern.__name__, "key": repr(key[0]), "registers": ovl.regs_per_thread,
                                "local_bytes": ovl.local_mem_per_thread, "shared_bytes": ovl.shared_mem_per_block})
    return out


def training_step_transfers():
    """Host-device copies during three device-resident training steps of a small ``cell`` layer."""
    from ..backends.cuda_backend import backend
    from ..backends.cuda_backend.training import step as training
    from ..backends.cuda_backend.runtime.compat import cuda_module
    from ..backends.cuda_backend.diagnostics.transfers import count_transfers
    cuda = cuda_module()
    spec = LayerSpec(8, 64, order=2, n_steps=8)
    params, x, _ = make_inputs(GpuConfig("train", spec, 256, {}))
    dparams = backend.to_device(params)
    dx = cuda.to_device(x)
    target = cuda.to_device(np.ones((256, 64), np.float32))
    opt = training.DeviceAdam(dparams, lr=1e-3)
    training.train_step(spec, dparams, dx, target, opt)
    with count_transfers() as count:
        for _ in range(3):
            training.train_step(spec, dparams, dx, target, opt)
    return {"steps": 3, "to_device": count.to_device, "to_host": count.to_host}


def bench_config(config, limits, repeats, warmup, with_compile):
    """Check, then time, one configuration; returns its result dict."""
    import torch
    params, x, dy = make_inputs(config)
    res = {"batch": config.batch, "spec": repr(config.spec), "flops": config.flops(),
           "bytes": config.bytes_moved()}
    res["floor_ms"] = 1e3 * max(config.bytes_moved() / (limits["copy_gbs"] * 1e9),
                                config.flops() / (limits["fp32_gflops"] * 1e9))
    run_c = cuda_runner(config, params, x, dy)
    t0 = time.perf_counter()
    run_c()  # the first call builds and compiles the kernels (numba JIT)
    res["cuda_first_call_seconds"] = time.perf_counter() - t0
    res["cuda"], out_c = _median_times(run_c, repeats, warmup)
    logger.info("%s cuda: %.2f ms", config.name, res["cuda"]["total_ms"])
    try:
        run_e = torch_runner(config, params, x, dy)
        res["eager"], out_e = _median_times(run_e, repeats, warmup)
        res["check"] = check(config, out_c, out_e, params, x, dy)
        del run_e, out_e
    except torch.cuda.OutOfMemoryError as exc:
        res["eager"] = {"error": f"out of memory: {exc}"}
    del out_c
    torch.cuda.empty_cache()
    if with_compile:
        try:
            t0 = time.perf_counter()
            run_t = torch_runner(config, params, x, dy, compiled=True)
            run_t()
            res["compile_seconds"] = time.perf_counter() - t0
            res["compile"], _ = _median_times(run_t, repeats, warmup)
            del run_t
        except Exception as exc:  # torch.compile fails on some graphs/sizes: report why
            res["compile"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        torch.cuda.empty_cache()
    _release_memory()
    cuda_ms = res["cuda"]["total_ms"]
    res["ratio"] = {k: res[k]["total_ms"] / cuda_ms for k in ("eager", "compile") if "total_ms" in res.get(k, {})}
    res["over_floor"] = cuda_ms / res["floor_ms"]
    return res


def _release_memory():
    """Return freed device memory of both frameworks to the driver (between cases)."""
    import gc

    import torch

    from ..backends.cuda_backend.runtime import pool
    from ..backends.cuda_backend.runtime.compat import cuda_module
    gc.collect()
    pending = getattr(getattr(cuda_module().current_context(), "memory_manager", None), "deallocations", None)
    if pending is not None:  # numba frees device memory lazily, in batches
        pending.clear()
    pool.release()  # and the backend's pool caches freed blocks
    torch.cuda.empty_cache()


def table(result):
    """A short markdown table of ``result``."""
    lines = ["| case | cuda ms | eager ms | compile ms | eager/cuda | compile/cuda | floor ms | cuda/floor |"
             " cuda vs torch32 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["cases"].items():
        def ms(k):
            return f"{r[k]['total_ms']:.2f}" if "total_ms" in r.get(k, {}) else "-"
        diff = r.get("check", {})
        worst = max([diff.get("y_vs_torch32", float("nan"))] + list(diff.get("grads_vs_torch32", {}).values()))
        lines.append(f"| {name} | {ms('cuda')} | {ms('eager')} | {ms('compile')} | "
                     f"{r['ratio'].get('eager', float('nan')):.1f}x | {r['ratio'].get('compile', float('nan')):.1f}x"
                     f" | {r['floor_ms']:.2f} | {r['over_floor']:.1f} | {worst:.1e} |")
    return "\n".join(lines)


def run(args):
    """``kinn-ref bench --backend cuda``: all GPU cases; prints the table, writes JSON with ``--json``."""
    from .._optional import require
    from ..backends import unavailable_reason
    from ..backends.cuda_backend.runtime.compat import simulator_active
    from .harness import write_json
    reason = unavailable_reason("cuda")
    if reason is not None:
        raise ValueError(f"kinn-ref bench --backend cuda needs the cuda backend: {reason}")
    if simulator_active():
        raise ValueError("kinn-ref bench --backend cuda needs a GPU (the simulator is too slow for benchmarks)")
    require("torch", "kinn-ref bench --backend cuda (it times against PyTorch on the GPU)")
    names = [n.strip() for n in args.configs.split(",")]
    configs = [c for c in gpu_configs() if c.name in names or c.name.rstrip("0123456789") in names]
    if not configs:
        raise ValueError(f"--configs must name some of cell, dense, dense128, dense1024, grid; got {args.configs!r}")
    import numba
    import torch
    result = {"command": "kinn-ref " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "versions": {"numpy": np.__version__, "numba": numba.__version__, "torch": torch.__version__},
              "limits": device_limits(), "cases": {}}
    logger.info("limits: %s", result["limits"])
    for config in configs:
        result["cases"][config.name] = bench_config(config, result["limits"], args.repeats,
                                                    max(2, args.repeats // 5), not args.no_compile)
        print(f"{config.name}: {result['cases'][config.name]['cuda']['total_ms']:.2f} ms", flush=True)
        if args.json:
            write_json(args.json, result)
    result["resources"] = kernel_resources()
    result["training_step_transfers"] = training_step_transfers()
    if args.json:
        write_json(args.json, result)
    print(f"device: {result['limits']['device']}; copy {result['limits']['copy_gbs']:.0f} GB/s, "
          f"fp32 {result['limits']['fp32_gflops'] / 1e3:.1f} TFLOP/s")
    print(f"training step transfers: {result['training_step_transfers']}")
    print(table(result))
    return 0
