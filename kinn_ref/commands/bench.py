"""``kinn-ref bench``: forward + backward timings of the numba backend side by side with the NumPy
reference and, when PyTorch is installed, the PyTorch port (:mod:`kinn_ref.bench.torch_port`); the
machine's measured limits, peak memory with and without checkpoints and first-call compile time.
Prints a markdown report (docs/benchmarks.md) and optionally writes the raw results as JSON."""
import datetime
import logging
import shlex
import sys
import warnings

from .._optional import available, install_hint
from .output import add_output_argument, prepare_output_file

logger = logging.getLogger(__name__)


def add_arguments(parser):
    parser.add_argument("--backend", choices=("numba", "cuda"), default="numba",
                        help="numba (CPU, default) or cuda (GPU, float32, against PyTorch on the GPU; "
                             "--no-compile leaves out torch.compile): see kinn_ref.bench.gpu")
    parser.add_argument("--configs", default="cell,dense,grid", help="comma-separated: cell, dense, grid")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated: float32, float64")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per backend (default 5)")
    parser.add_argument("--no-torch", action="store_true", help="leave out the PyTorch port")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    parser.add_argument("--checkpoint-every", type=int, default=4,
                        help="checkpoint interval of the memory comparison (default 4)")
    parser.add_argument("--threads", type=int,
                        help="threads for every backend (numba, BLAS, PyTorch); default: all cores")
    add_output_argument(parser, "--json", kind="file",
                        help="also write the raw results to this JSON file (default: none written)")


def run(args):
    from ..backends import available_backends, unavailable_reason
    from ..bench import harness

    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.json is not None:
        prepare_output_file(args.json, "--json")
    if args.backend == "cuda":
        from ..bench import gpu
        return gpu.run(args)
    if "numba" not in available_backends():
        raise ValueError(f"the numba backend is not usable here: {unavailable_reason('numba')}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        with harness.thread_limit(args.threads):
            return _run(args)
    return _run(args)


def _run(args):
    from ..bench import harness
    from ..bench.configs import cpu_configs
    from ..bench.report import markdown

    names = [n.strip() for n in args.configs.split(",")]
    configs = [c for c in cpu_configs(tuple(d.strip() for d in args.dtypes.split(","))) if c.name in names]
    unknown = set(names) - {c.name for c in configs}
    if unknown or not configs:
        raise ValueError(f"--configs must name some of cell, dense, grid; got {args.configs!r}")
    backends = ["numba", "numpy"]
    if not args.no_torch:
        if not available("torch"):
            warnings.warn(f"PyTorch is not installed; the comparison leaves it out ({install_hint('torch')})",
                          stacklevel=1)
        else:
            backends.append("torch")
    result = {"command": "kinn-ref " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": harness.machine_description(), "limits": harness.machine_limits(),
              "backends": backends, "timings": {}, "memory": {}, "checkpoint_every": args.checkpoint_every}
    for config in configs:
        logger.info("timing %s", config.label)
        res = harness.time_side_by_side(config, backends, args.repeats)
        res.update(flops=config.flops(), bytes=config.bytes_moved())
        result["timings"][config.label] = res
        print(f"{config.label}: " + ", ".join(f"numba {r:.1f}x faster than {b}" for b, r in res["ratio"].items()),
              flush=True)
        if not args.no_memory:
            result["memory"][config.label] = {
                f"{b}{suffix}": harness.peak_memory(config, b, every)
                for b in ("numba", "numpy") for suffix, every in (("", None),
                                                                  ("_checkpointed", args.checkpoint_every))}
    if not args.no_compile:
        result["compile"] = harness.compile_seconds()
    if args.json:
        harness.write_json(args.json, result)
    print(markdown(result))
    return 0
