"""Stability maps as sweeps: one point per conductance scale of the map (a row of every integrator's
spectral radius over ``dt``, and its analytic boundary), computed by
:func:`kinn_ref.analysis.stability_report.stability_map_row` wherever the engine runs it."""
import dataclasses

from .engine import Point, PointStore, digest


def store_folder(out, suffix=""):
    """Where the rows of the map ``stability_map{suffix}`` wait until the map is written."""
    return out / f".stability_map{suffix}.points"


def map_row(*arguments):
    """:func:`~kinn_ref.analysis.stability_report.stability_map_row` (importable on any worker)."""
    from ..analysis.stability_report import stability_map_row
    return stability_map_row(*arguments)


def sweep_rows(engine, store, label="stability map"):
    """The ``rows`` argument of :func:`~kinn_ref.analysis.stability_report.stability_map` that runs each row
    as a point of ``engine``, persisted in ``store``."""
    def rows(arguments):
        points = []
        for i, args in enumerate(arguments):
            spec, params, dts, scale, target, integrators, source = args
            fingerprint = digest(dataclasses.asdict(spec), params, dts, scale, target, integrators, source)
            points.append(Point(f"row-{i:04d}", map_row, args, fingerprint))
        results = engine.run(points, store, label=label)
        return [results[p.key] for p in points]
    return rows


def swept_stability_map(spec, params, engine, out, suffix="", target=None, resolution=48):
    """:func:`~kinn_ref.analysis.stability_report.stability_map` of the layer with its rows run by
    ``engine`` and persisted under ``out`` until the caller has written the map (then
    ``PointStore(store_folder(out, suffix)).clear()``).

    Returns
    -------
    StabilityMap
        Bitwise the map of the serial :func:`stability_map`.
    """
    from ..analysis.stability_report import stability_map
    store = PointStore(store_folder(out, suffix))
    return stability_map(spec, params, target=target, resolution=resolution,
                         rows=sweep_rows(engine, store, label=f"stability map{suffix}"))
