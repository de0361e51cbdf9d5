"""``kinn-ref stability``: the largest stable ``dt`` of a layer per integrator and cell, the spectral radius and
verdict at the chosen ``dt``, a map over (dt, conductance scale) as PNG + JSON with the analytic boundary, and
the stability regions with the eigenvalues of ``dt J`` (docs/stability.md).

The layer comes from options on the command line, a JSON config, or a saved ``.npz``: a training checkpoint
(:mod:`kinn_ref.training.checkpoint`; every KINN layer of the model is analysed) or a plain archive of the
parameters (keys ``W``, ``b``, ... optionally prefixed ``param/`` or ``param.``) with a ``spec`` entry holding
the :class:`~kinn_ref.LayerSpec` fields as a JSON string.
"""
import json
import math
from pathlib import Path

from ..parameterization import init_params
from ..spec import BOUNDARIES, COUPLINGS, INTEGRATORS, PARAMETERIZATIONS, LayerSpec
from .output import add_output_argument, default_out, prepare_output_dir


def add_arguments(parser):
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="JSON file: LayerSpec fields (optionally under 'spec') and "
                                                    "an optional 'seed' of the initial parameters")
    source.add_argument("--checkpoint", type=Path, help=".npz: a training checkpoint, or parameters plus a "
                                                        "'spec' JSON entry")
    layer = parser.add_argument_group("layer options (without --config/--checkpoint)")
    layer.add_argument("--in-features", type=int, default=3)
    layer.add_argument("--nodes", type=int, default=4, help="nodes per cell (channels per point for grid)")
    layer.add_argument("--order", type=int, default=1, help="cells in the cascade")
    layer.add_argument("--coupling", choices=COUPLINGS, default="none")
    layer.add_argument("--integrator", choices=INTEGRATORS, default="expeuler")
    layer.add_argument("--param", choices=PARAMETERIZATIONS, default="positive")
    layer.add_argument("--grid-shape", default=None, help="grid points per axis, e.g. 32 or 8x8 (default: none; required for --coupling grid)")
    layer.add_argument("--boundary", choices=BOUNDARIES, default="periodic")
    layer.add_argument("--seed", type=int, default=0, help="seed of init_params")
    parser.add_argument("--dt", type=float, default=None, help="step to judge (default: the layer's dt)")
    parser.add_argument("--layer", default=None, help="only the KINN layer with this name in a training "
                                                      "checkpoint (e.g. layers.0; default: every KINN layer)")
    parser.add_argument("--scale-target", choices=("coupling", "leak", "all"), default=None,
                        help="conductances scaled in the map (default: coupling; leak for uncoupled cells)")
    parser.add_argument("--resolution", type=int, default=None, help="points per axis of the map (default 40)")
    add_output_argument(parser, "--out", default=default_out("stability"), help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="skip the map and the plots")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when the layer's own integrator is unstable at the chosen dt")
    from ..scaleout.engine import add_engine_arguments
    add_engine_arguments(parser)


def _grid_shape(text):
    if text is None:
        return None
    try:
        return tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"--grid-shape must look like 32 or 8x8, got {text!r}") from None


def _spec_from_fields(fields, where):
    fields = dict(fields)
    if isinstance(fields.get("grid_shape"), list):     # JSON has no tuples
        fields["grid_shape"] = tuple(fields["grid_shape"])
    try:
        return LayerSpec(**fields)
    except TypeError as exc:
        raise ValueError(f"{where}: not a set of LayerSpec fields ({exc})") from None


def _from_config(path):
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--config {path}: cannot read a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a JSON object, got {type(data).__name__}")
    seed = data.pop("seed", 0)
    spec = _spec_from_fields(data.get("spec", data), f"--config {path}")
    return [("layer", spec, init_params(spec, seed=seed))]


def _from_archive(path, only=None):
    from ..training.checkpoint import CheckpointError, read_archive
    try:
        arrays = read_archive(path)
    except CheckpointError as exc:
        raise ValueError(f"--checkpoint: {exc}") from None
    if "meta" in arrays:
        return _from_training_checkpoint(path, only)
    if "spec" not in arrays:
        raise ValueError(f"--checkpoint {path}: expected a training checkpoint ('meta' entry) or parameters "
                         "with a 'spec' JSON entry")
    spec = _spec_from_fields(json.loads(str(arrays.pop("spec"))), f"--checkpoint {path}")
    params = {}
    for key, value in arrays.items():
        name = key.split("/", 1)[1] if key.startswith("param/") else key[6:] if key.startswith("param.") else key
        params[name] = value
    return [("layer", spec, params)]


def _from_training_checkpoint(path, only):
    from ..training.checkpoint import load_checkpoint
    from ..training.models import build_model
    from ..training.regularization import kinn_layers
    ckpt = load_checkpoint(path)
    model = build_model(ckpt.config)
    layers = []
    for prefix, layer in kinn_layers(model):
        if only is not None and prefix != only:
            continue
        params = {k: ckpt.params[f"{prefix}.{k}"] if f"{prefix}.{k}" in ckpt.params else v
                  for k, v in layer.params.items()}
        spec = layer.spec.replace(dt=ckpt.meta["layer_dt"].get(prefix, layer.spec.dt))
        layers.append((prefix, spec, params))
    if not layers:
        raise ValueError(f"--checkpoint {path}: no KINN layer" + (f" named {only!r}" if only else ""))
    return layers


def load_layers(args):
    """``[(name, spec, params)]`` from the command-line arguments."""
    if args.config is not None:
        return _from_config(args.config)
    if args.checkpoint is not None:
        return _from_archive(args.checkpoint, args.layer)
    spec = LayerSpec(args.in_features, args.nodes, order=args.order, coupling=args.coupling,
                     integrator=args.integrator, param=args.param, grid_shape=_grid_shape(args.grid_shape),
                     boundary=args.boundary, **({} if args.dt is None else {"dt": args.dt}))
    return [("layer", spec, init_params(spec, seed=args.seed))]


def _fmt(v):
    return "unbounded" if math.isinf(v) else f"{v:.6g}"


def _print_report(name, report):
    spec = report.spec
    grid = f" grid={'x'.join(map(str, spec.grid_shape))} {spec.boundary}" if spec.coupling == "grid" else ""
    print(f"{name}: coupling={spec.coupling}{grid} nodes={spec.total_nodes} order={spec.order} "
          f"param={spec.param} integrator={spec.integrator} dt={spec.dt:g}")
    K = spec.order
    w = max(len("integrator"), *map(len, report.table))        # the name column fits every integrator
    print("largest stable dt per integrator and cell")
    print(f"  {'integrator':<{w}} " + " ".join(f"{'cell ' + str(k + 1):>11}" for k in range(K)) +
          f" {'layer':>11}  method")
    for integ, steps in report.table.items():
        methods = sorted({s.method for s in steps})
        note = "; ".join(methods)
        if any(s.stable_from is not None for s in steps):
            note += f" (stable for dt >= {max(s.stable_from or 0 for s in steps):.6g})"
        print(f"  {integ:<{w}} " + " ".join(f"{_fmt(s.dt_max):>11}" for s in steps) +
              f" {_fmt(report.dt_max(integ)):>11}  {note}")
    from ..analysis.stability import verdict
    print(f"at dt = {report.dt:g}")
    print(f"  {'integrator':<{w}} {'spectral radius':>16} {'(layer matrix)':>15}  verdict")
    for integ in report.table:
        layer = report.rho_layer.get(integ)
        marker = "  <- the layer's integrator" if integ == spec.integrator else ""
        print(f"  {integ:<{w}} {report.rho[integ]:16.10f} {'-' if layer is None else f'{layer:.10f}':>15}  "
              f"{verdict(report.rho[integ])}{marker}")


def _suffix(name, layers):
    return "" if len(layers) == 1 else "_" + name.replace(".", "_")


def output_files(layers, no_plots):
    """The files ``run`` writes into ``--out`` for ``layers``: per layer, the JSON report, or the map's JSON
    and PNG and the stability regions' PNG."""
    names = []
    for name, _, _ in layers:
        suffix = _suffix(name, layers)
        names += ([f"stability{suffix}.json"] if no_plots else
                  [f"stability_map{suffix}.json", f"stability_map{suffix}.png", f"stability_regions{suffix}.png"])
    return names


def run(args):
    from contextlib import nullcontext

    from ..scaleout.engine import engine_from_args
    if args.no_plots:
        unused = [name for name, value in (("--workers", args.workers), ("--scheduler", args.scheduler),
                                           ("--resolution", args.resolution), ("--scale-target", args.scale_target))
                  if value is not None]
        if unused:
            raise ValueError(f"{' and '.join(unused)} {'shape' if len(unused) > 1 else 'shapes'} the stability map, "
                             "which --no-plots skips; drop one or the other")
    args.resolution = 40 if args.resolution is None else args.resolution
    if args.resolution < 2:
        raise ValueError(f"--resolution must be >= 2, got {args.resolution}")
    engine = engine_from_args(args)
    layers = load_layers(args)
    prepare_output_dir(args.out, files=output_files(layers, args.no_plots))
    with nullcontext(engine) if args.no_plots else engine:
        return _run(args, layers, engine)


def _run(args, layers, engine):
    from ..analysis.golden_store import atomic_write_bytes
    from ..analysis.stability import verdict
    from ..analysis.stability_report import assess
    from ..scaleout.engine import PointStore
    from ..scaleout.stability_sweep import store_folder, swept_stability_map
    unstable = False
    for name, spec, params in layers:
        if args.dt is not None:
            spec = spec.replace(dt=args.dt)
        report = assess(spec, params, spec.dt)
        _print_report(name, report)
        unstable |= verdict(report.rho[spec.integrator]) == "unstable"
        suffix = _suffix(name, layers)
        if args.no_plots:
            atomic_write_bytes(args.out / f"stability{suffix}.json",
                               (json.dumps(report.to_dict(), indent=1) + "\n").encode())
            print(f"wrote {args.out / f'stability{suffix}.json'}")
            continue
        from ..analysis.plots import plot_stability_map, plot_stability_regions
        smap = swept_stability_map(spec, params, engine, args.out, suffix, target=args.scale_target,
                                   resolution=args.resolution)
        record = dict(report.to_dict(), map=smap.to_dict())
        files = [args.out / f"stability_map{suffix}.json", args.out / f"stability_map{suffix}.png",
                 args.out / f"stability_regions{suffix}.png"]
        atomic_write_bytes(files[0], (json.dumps(record, indent=1) + "\n").encode())
        plot_stability_map(smap, files[1], chosen=(spec.dt, 1.0),
                           title=f"{name}: {spec.coupling} coupling, {spec.total_nodes} nodes, order {spec.order}")
        plot_stability_regions(spec, params, spec.dt, files[2])
        PointStore(store_folder(args.out, suffix)).clear()
        print("wrote " + ", ".join(str(f) for f in files))
    return 1 if (args.check and unstable) else 0
