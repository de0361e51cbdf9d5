"""Time one GPU benchmark case of the ``cuda`` backend under several settings of its tunables, side by side.

Each variant sets some names of :mod:`kinn_ref.backends.cuda_backend.runtime.config` (kernels are rebuilt for it),
runs forward + backward on the case's device arrays after a warm-up and prints the median times (CUDA events).
With ``--iters`` and no variants it simply runs the case a few times, for a profiler::

    python -m kinn_ref.bench.gpu_profile cell --variant "NODE_BLOCK=(32, 4)" --variant "CELL_SEGMENT=4"
    python -m kinn_ref.bench.gpu_profile cell --kernels     # GPU time per kernel (PyTorch's CUPTI profiler)
    ncu --clock-control none -k regex:backward -c 1 python -m kinn_ref.bench.gpu_profile cell --batch 65536
"""
import argparse
import ast

import numpy as np

from .gpu import GpuConfig, _median_times, cuda_runner, gpu_configs, kernel_resources, make_inputs


def parse_variant(text):
    """``"NAME=VALUE; NAME=VALUE"`` -> dict of tunables (values are Python literals)."""
    from ..backends.cuda_backend.runtime import config
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not hasattr(config, name) or not name.isupper():
            raise ValueError(f"--variant must be NAME=VALUE with NAME a tunable of cuda_backend.runtime.config, got {part!r}")
        out[name] = ast.literal_eval(value.strip())
    return out


def time_variant(case, tunables, repeats):
    """Median forward/backward/total ms of ``case`` with ``tunables`` set (restored afterwards)."""
    from ..backends.cuda_backend.runtime import config
    saved = {k: getattr(config, k) for k in tunables}
    try:
        for k, v in tunables.items():
            setattr(config, k, v)
        params, x, dy = make_inputs(case)
        times, _ = _median_times(cuda_runner(case, params, x, dy), repeats, 2)
        times.pop("samples_ms")
        return times
    finally:
        for k, v in saved.items():
            setattr(config, k, v)


def kernel_times(case, calls=3):
    """``[(kernel name, calls, total ms), ...]`` of ``calls`` forward + backward passes of ``case`` (default
    tunables), longest first, from PyTorch's profiler (CUPTI sees numba's kernels too)."""
    from torch.profiler import ProfilerActivity, profile
    params, x, dy = make_inputs(case)
    run = cuda_runner(case, params, x, dy)
    run()
    run()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            run()
    rows = []
    for e in prof.key_averages():
        us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if us > 0:
            rows.append((e.key, e.count, us / 1e3))
    return sorted(rows, key=lambda r: -r[2])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kinn_ref.bench.gpu_profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=[c.name for c in gpu_configs()])
    parser.add_argument("--batch", type=int, help="batch size (default: the benchmark's)")
    parser.add_argument("--variant", action="append", default=[], help="NAME=VALUE[; NAME=VALUE] (repeatable)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--kernels", action="store_true",
                        help="also list the GPU time of each kernel over three passes (needs torch)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    case = next(c for c in gpu_configs() if c.name == args.case)
    if args.batch is not None:
        if args.batch < 1:
            raise SystemExit(f"--batch must be >= 1, got {args.batch}")
        case = GpuConfig(case.name, case.spec, args.batch, case.goals)
    variants = [("default", {})] + [(v, parse_variant(v)) for v in args.variant]
    results = []
    seen = set()
    for label, tunables in variants:
        res = time_variant(case, tunables, args.repeats)
        new = [r for r in kernel_resources() if repr(sorted(r.items())) not in seen]
        seen.update(repr(sorted(r.items())) for r in new)
        results.append({"variant": label, **res, "kernels": new})
        print(f"{case.name} B={case.batch} {label}: forward {res['forward_ms']:.3f} ms, "
              f"backward {res['backward_ms']:.3f} ms, total {res['total_ms']:.3f} ms", flush=True)
        for r in new:
            print(f"    {r['builder']}.{r['kernel']}: {r['registers']} registers, {r['local_bytes']} B local, "
                  f"{r['shared_bytes']} B shared", flush=True)
    kernels = None
    if args.kernels:
        passes = 3
        kernels = kernel_times(case, passes)
        print(f"{case.name} B={case.batch}: GPU time per kernel over {passes} forward + backward passes")
        for name, count, ms in kernels:
            print(f"    {ms / passes:9.3f} ms per pass  {count:4d} launches  {name[:90]}")
    if args.json:
        from .harness import write_json
        write_json(args.json, {"case": case.name, "batch": case.batch, "results": results,
                               "kernels": kernels, "numpy": np.__version__})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
