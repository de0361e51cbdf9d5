"""What ``kinn-ref stability`` reports: ``dt_max`` per integrator and cell, the spectral radius and verdict at
the chosen ``dt``, and the map of the spectral radius over (dt, conductance scale) with the analytic
boundary (docs/stability.md)."""
import math
from dataclasses import dataclass, field

import numpy as np

from kinn_ref.linear_analysis import amplification_matrix
from kinn_ref.spec import INTEGRATORS

from .golden_cases import spec_to_dict
from .stability import (default_scale_target, dt_max_table, finite_spectral_radius, layer_cells, layer_dt_max,
                        layer_spectral_radius, scale_conductances, verdict)

DENSE_LIMIT = 256   # largest K*N for which the numeric spectral radius of the actual layer is computed


def layer_rho(spec, params, dt):
    """Spectral radius of the actual layer's amplification matrix (:mod:`kinn_ref.linear_analysis`), ``inf``
    when a growing mode overflows the step."""
    with np.errstate(all="ignore"):
        return finite_spectral_radius(amplification_matrix(spec, params, dt))


def _json_number(v):
    """``v`` as a JSON number; None for ``inf`` (unbounded) or None."""
    return None if v is None or math.isinf(v) else float(v)


@dataclass
class StabilityReport:
    """Stability of one layer.

    Attributes
    ----------
    spec : kinn_ref.LayerSpec
    dt : float
        The chosen step.
    table : dict of str -> list of StableStep
        Per integrator, per cell.
    rho : dict of str -> float
        Spectral radius at ``dt`` per integrator (analysis).
    rho_layer : dict of str -> float or None
        Spectral radius at ``dt`` of the actual layer's amplification matrix
        (:func:`kinn_ref.linear_analysis.spectral_radius`); None for layers above :data:`DENSE_LIMIT` states.
    """

    spec: object
    dt: float
    table: dict
    rho: dict
    rho_layer: dict = field(default_factory=dict)

    def dt_max(self, name):
        """Largest stable ``dt`` of the layer for integrator ``name``."""
        return min(s.dt_max for s in self.table[name])

    def to_dict(self):
        """JSON-ready dict (``dt_max`` of ``null`` means unbounded)."""
        return {
            "spec": spec_to_dict(self.spec), "dt": self.dt,
            "integrators": {name: {
                "dt_max": _json_number(self.dt_max(name)),
                "cells": [{"cell": s.cell, "dt_max": _json_number(s.dt_max), "method": s.method,
                           "stable_from": s.stable_from} for s in steps],
                "spectral_radius": self.rho[name], "spectral_radius_layer": self.rho_layer.get(name),
                "verdict": verdict(self.rho[name])} for name, steps in self.table.items()},
        }


def assess(spec, params, dt=None):
    """:class:`StabilityReport` of ``(spec, params)`` at ``dt`` (default ``spec.dt``) for every integrator."""
    dt = spec.dt if dt is None else float(dt)
    table = dt_max_table(spec, params)
    rho = {name: layer_spectral_radius(spec, params, dt, name) for name in INTEGRATORS}
    small = spec.order * spec.total_nodes <= DENSE_LIMIT
    rho_layer = {name: layer_rho(spec.replace(integrator=name), params, dt) if small else None
                 for name in INTEGRATORS}
    return StabilityReport(spec, dt, table, rho, rho_layer)


@dataclass
class StabilityMap:
    """Spectral radius over a grid of (conductance scale, dt), per integrator.

    Attributes
    ----------
    dts : ndarray, shape (n_dt,)
    scales : ndarray, shape (n_scale,)
    target : str
        Which conductances are scaled (``coupling``, ``leak`` or ``all``).
    rho : dict of str -> ndarray, shape (n_scale, n_dt)
    boundary : dict of str -> ndarray, shape (n_scale,)
        Analytic ``dt_max`` at each scale (``inf`` when unbounded).
    source : str
        Where ``rho`` comes from: ``"layer"`` (the amplification matrix of the actual layer) or
        ``"analysis"`` (:func:`analysis.stability.layer_spectral_radius`, for large layers).
    """

    dts: np.ndarray
    scales: np.ndarray
    target: str
    rho: dict
    boundary: dict
    source: str

    def to_dict(self):
        return {"dt": self.dts.tolist(), "conductance_scale": self.scales.tolist(), "scale_target": self.target,
                "spectral_radius_source": self.source,
                "integrators": {name: {"spectral_radius": self.rho[name].tolist(),
                                       "boundary_dt_max": [_json_number(v) for v in self.boundary[name]]}
                                for name in self.rho},
                "notes": "spectral_radius[i][j] is at conductance_scale[i] and dt[j]; boundary_dt_max[i] is the "
                         "analytic largest stable dt at conductance_scale[i] (null: unbounded)"}


def default_dt_range(spec, params, span=30.0):
    """A ``dt`` range around the layer's finite ``dt_max`` values (``spec.dt`` when all are unbounded)."""
    finite = [v for v in (layer_dt_max(spec, params, name) for name in INTEGRATORS) if 0 < v < math.inf]
    center = float(np.exp(np.mean(np.log(finite)))) if finite else spec.dt
    return center / span, center * span


def stability_map(spec, params, dts=None, scales=None, target=None, integrators=INTEGRATORS, resolution=48,
                  source=None, rows=None):
    """:class:`StabilityMap` of the layer.

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    dts, scales : ndarray, optional
        Grid axes; logarithmic ranges around the layer's ``dt_max`` and over ``[0.01, 100]`` by default.
    target : {"coupling", "leak", "all"}, optional
        Default :func:`analysis.stability.default_scale_target`.
    resolution : int
        Points per axis of the default grid.
    source : {"layer", "analysis"}, optional
        Default ``"layer"`` up to :data:`DENSE_LIMIT` states.
    rows : callable, optional
        ``rows(row_arguments) -> list of (rho, boundary)``, one per entry of the list of
        :func:`stability_map_row` argument tuples it receives, in order (default: computed here, one after
        the other; :mod:`kinn_ref.scaleout.stability_sweep` runs them as Dask tasks).
    """
    dts, scales, target, source = map_axes(spec, params, dts, scales, target, resolution, source)
    arguments = [(spec, params, dts, float(s), target, tuple(integrators), source) for s in scales]
    computed = rows(arguments) if rows is not None else [stability_map_row(*a) for a in arguments]
    rho = {name: np.array([r[0][name] for r in computed], float).reshape(len(scales), len(dts))
           for name in integrators}
    boundary = {name: np.array([r[1][name] for r in computed], float).reshape(len(scales))
                for name in integrators}
    return StabilityMap(dts, scales, target, rho, boundary, source)


def map_axes(spec, params, dts=None, scales=None, target=None, resolution=48, source=None):
    """The grid and settings of :func:`stability_map`: ``(dts, scales, target, source)`` with the defaults
    filled in."""
    target = target or default_scale_target(spec)
    if dts is None:
        dts = np.logspace(*np.log10(default_dt_range(spec, params)), resolution)
    if scales is None:
        scales = np.logspace(-2, 2, resolution)
    dts, scales = np.asarray(dts, float), np.asarray(scales, float)
    source = source or ("layer" if spec.order * spec.total_nodes <= DENSE_LIMIT else "analysis")
    if source not in ("layer", "analysis"):
        raise ValueError(f"source must be 'layer' or 'analysis', got {source!r}")
    return dts, scales, target, source


def stability_map_row(spec, params, dts, scale, target, integrators, source):
    """One conductance scale of :func:`stability_map`: ``(rho, boundary)`` with ``rho[name]`` the spectral
    radius at every ``dt`` (list of float) and ``boundary[name]`` the analytic ``dt_max`` (float) per
    integrator."""
    scaled = scale_conductances(spec, params, scale, target)
    rho, boundary = {}, {}
    for name in integrators:
        boundary[name] = float(layer_dt_max(spec, params, name, scale, target))
        if source == "layer":
            layer_spec = spec.replace(integrator=name)
            rho[name] = [float(layer_rho(layer_spec, scaled, dt)) for dt in dts]
        else:
            rho[name] = [float(layer_spectral_radius(spec, params, dt, name, scale, target)) for dt in dts]
    return rho, boundary


def jacobian_eigenvalues(spec, params):
    """Eigenvalues of the layer's Jacobian ``J`` (all cells), for the stability-region plots."""
    return np.concatenate([c.eigenvalues() for c in layer_cells(spec, params)])


def expeuler_split(spec, params, dt):
    """Mean of ``w = -dt (g - d) / C`` over the nodes: the exactly integrated part of the expeuler step."""
    w = []
    for c in layer_cells(spec, params):
        d = np.diagonal(c.coupling_matrix()) if c.kind != "none" else np.zeros(c.N)
        w.append(-dt * (c.g - d) / c.C)
    return float(np.mean(np.concatenate(w)))
