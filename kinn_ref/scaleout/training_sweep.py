"""Grids of training runs as sweeps (``kinn-ref sweep``): one point per (task, model, hyperparameters), each
trained by :func:`kinn_ref.tasks.run.train_task` into its own run folder wherever the engine runs it.

A point's run folder holds the usual ``checkpoint.npz``, ``metrics.jsonl`` and ``result.json``; a point
interrupted mid-training resumes from its checkpoint (bitwise, like ``kinn-ref train --resume``), and a
finished point is not trained again.
"""
import itertools
import json

from .engine import Point, digest

#: Hyperparameters a grid may range over, with how their values are read.
GRID_PARAMETERS = {"lr": float, "epochs": int, "batch_size": int, "optimizer": str, "clip_norm": float,
                   "penalty": float, "seed": int}


def parse_grid(entries):
    """``["lr=1e-3,3e-3", "seed=0,1"]`` -> ``{"lr": [0.001, 0.003], "seed": [0, 1]}`` (ValueError naming
    ``--grid`` on a bad entry)."""
    grid = {}
    for entry in entries or ():
        name, sep, values = str(entry).partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"--grid must look like NAME=V1,V2,..., got {entry!r}")
        if name not in GRID_PARAMETERS:
            raise ValueError(f"--grid: NAME must be one of {sorted(GRID_PARAMETERS)}, got {name!r}")
        if name in grid:
            raise ValueError(f"--grid: {name} is given twice")
        kind = GRID_PARAMETERS[name]
        try:
            grid[name] = [kind(v.strip()) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--grid {name}: values must be {kind.__name__}s, got {values!r}") from None
        if len(set(grid[name])) != len(grid[name]):
            raise ValueError(f"--grid {name}: values repeat in {values!r}")
    return grid


def _value_text(v):
    return repr(v) if isinstance(v, float) else str(v)


def grid_points(tasks, models, grid, size, backend, out):
    """The sweep's points: every task x model x grid combination, keyed ``TASK-MODEL[-name=value...]``."""
    names = sorted(grid)
    points = []
    for task, model in itertools.product(tasks, models):
        for values in itertools.product(*(grid[n] for n in names)):
            overrides = dict(zip(names, values))
            key = "-".join([task, model] + [f"{n}={_value_text(overrides[n])}" for n in names])
            settings = {"task": task, "model": model, "size": size, "backend": backend, "overrides": overrides}
            points.append(Point(key, train_point, (task, model, size, backend, str(out / key), overrides),
                                digest(json.dumps(settings, sort_keys=True))))
    return points


def train_point(task, model, size, backend, out_dir, overrides):
    """Train one point into ``out_dir`` (resuming its checkpoint if one is there); returns its result."""
    from pathlib import Path

    from ..tasks.run import train_task
    from ..training.trainer import CHECKPOINT_NAME
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = overrides.get("seed", 0)
    rest = {k: v for k, v in overrides.items() if k != "seed"}
    result, _, _ = train_task(task, model, size=size, seed=seed, backend=backend, out_dir=out_dir,
                              resume=(out_dir / CHECKPOINT_NAME).exists(), progress=False, **rest)
    return result
