"""``kinn-ref sweep``: a grid of training runs over tasks, models and hyperparameters, one run folder per
point, serially or on Dask (docs/scaling.md). An interrupted sweep run again resumes: finished points are not
trained again, a point cut short continues from its checkpoint."""
import json
import sys

from ..tasks.registry import TASKS
from .output import add_output_argument, default_out, prepare_output_dir

#: The sweep's summary, beside the run folders.
SUMMARY_NAME = "sweep.json"


def add_arguments(parser):
    from ..scaleout.engine import add_engine_arguments
    from ..scaleout.training_sweep import GRID_PARAMETERS
    parser.add_argument("--task", default="oscillator", help="task, or tasks separated by commas: "
                        + ", ".join(sorted(TASKS)))
    parser.add_argument("--model", default=None, help="model, or models separated by commas (default: each "
                        "task's first)")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="values of one hyperparameter (repeat for more): " + ", ".join(sorted(GRID_PARAMETERS)))
    parser.add_argument("--size", choices=("small", "full"), default="small", help="data size of every run")
    parser.add_argument("--backend", default="numpy", help="backend of every run: numpy, numba, cuda or auto")
    add_output_argument(parser, "--out", default=default_out("sweep"), help="folder of the run folders")
    add_engine_arguments(parser)


def _names(text, what, allowed):
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise ValueError(f"{what} must name at least one, got {text!r}")
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ValueError(f"{what} must be among {sorted(allowed)}, got {bad}")
    return list(dict.fromkeys(names))


def run(args):
    from ..backends import resolve
    from ..scaleout.engine import PointStore, SweepError, engine_from_args
    from ..scaleout.training_sweep import grid_points, parse_grid
    from ..training.atomic import atomic_write_text
    tasks = _names(args.task, "--task", TASKS)
    if args.model is None:
        models_by_task = {t: [next(iter(TASKS[t].models))] for t in tasks}
    else:
        models = _names(args.model, "--model", {m for t in tasks for m in TASKS[t].models})
        for t in tasks:
            missing = [m for m in models if m not in TASKS[t].models]
            if missing:
                raise ValueError(f"--model {missing} is not a model of task {t!r} "
                                 f"(its models: {sorted(TASKS[t].models)})")
        models_by_task = {t: models for t in tasks}
    grid = parse_grid(args.grid)
    backend = resolve(args.backend)
    engine = engine_from_args(args)
    points = [p for t in tasks for p in grid_points([t], models_by_task[t], grid, args.size, backend, args.out)]
    out = prepare_output_dir(args.out, files=[SUMMARY_NAME] + [f"{p.key}/result.json" for p in points])
    store = PointStore(out / ".sweep.points")
    print(f"sweep of {len(points)} training runs {engine.describe()} into {out}", file=sys.stderr, flush=True)
    failed = None
    with engine:
        try:
            results = engine.run(points, store, label="sweep")
        except SweepError as exc:
            failed, results = exc, {p.key: store.load(p) for p in points if store.load(p) is not None}
    summary = {"points": [dict({"key": p.key, "task": p.args[0], "model": p.args[1], **p.args[5]},
                               **({"metric": results[p.key]["metric"], "value": results[p.key]["value"],
                                   "epochs": results[p.key]["epochs"]} if p.key in results else {"failed": True}))
                          for p in points], "size": args.size, "backend": backend}
    atomic_write_text(out / SUMMARY_NAME, json.dumps(summary, indent=1) + "\n")
    width = max(len(p.key) for p in points)
    for entry in summary["points"]:
        shown = "failed" if entry.get("failed") else f"{entry['metric']} = {entry['value']:.4g}"
        print(f"  {entry['key']:<{width}}  {shown}")
    print(f"wrote {out}/{SUMMARY_NAME} and {len(results)} run folders")
    if failed is not None:
        print(f"kinn-ref sweep: error: {failed}", file=sys.stderr)
        return 1
    return 0
