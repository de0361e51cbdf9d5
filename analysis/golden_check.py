"""Checking implementations against the golden suite (``kinn-ref golden verify`` and ``golden check``).

An outside implementation is checked through an *adapter*, a function

    adapter(spec, params, x, V0, dy) -> (y, grads)

- ``spec``: dict of the layer options (the fields of :class:`kinn_ref.LayerSpec`, ``grid_shape`` a list or
  None), see docs/math.md;
- ``params``: dict of raw parameter arrays (``W, b, C_raw, g_raw, leak, beta`` and ``G_raw`` where the
  coupling has one), in the case's dtype;
- ``x``: the input; ``V0``: the initial state or None; ``dy``: the cotangent of the output;
- returns the output ``y`` and either None (forward only) or a dict of gradients of ``sum(dy * y)`` with the
  keys of ``params``, ``"x"`` and, when ``V0`` is given, ``"V0"``.

An adapter raises ``NotImplementedError`` for a case it does not support; the case is then reported as
``unsupported`` (not a failure).

Every comparison reports the norm-wise relative error of each array against the case's tolerance and its
digits of agreement, ``-log10`` of that error (:func:`digits_of_agreement`); :func:`format_table` shows the
fewest digits per case and per tier (:func:`digits_by_tier`).
"""
import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import kinn_ref
from kinn_ref.layers import KINNLayers

from .golden_cases import spec_to_dict
from .golden_store import GoldenIntegrityError, load_suite

GPU_BACKENDS = ("cuda",)


DIGITS_CAP = 17.0       # digits of agreement reported for exact agreement (and never more)


def digits_of_agreement(error):
    """``-log10(error)`` of a relative error: the decimal digits of agreement, at most :data:`DIGITS_CAP`
    (``error == 0``); 0 for a non-finite error."""
    if not np.isfinite(error):
        return 0.0
    return DIGITS_CAP if error <= 10.0 ** -DIGITS_CAP else float(-np.log10(error))


def relative_error(actual, expected):
    """``||actual - expected|| / ||expected||`` (``||actual||`` when ``expected`` is all zeros), in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} differs from the expected {expected.shape}")
    scale = np.linalg.norm(expected)
    diff = np.linalg.norm(actual - expected)
    return float(diff / scale) if scale > 0 else float(diff)


@dataclass
class CaseResult:
    """Outcome of one case.

    Attributes
    ----------
    name : str
    dtype : str
    status : {"ok", "mismatch", "error", "unsupported"}
    tolerance : float
    errors : dict of str -> float
        Relative error of ``"y"`` and of each gradient checked.
    detail : str
        What went wrong (missing gradients, shapes, the exception).
    tier : str
        The case's tier (``basic``, ``stiff``, ``long``, ``edge``, ``float32``).
    digits : dict of str -> float
        Digits of agreement of each array of ``errors`` (:func:`digits_of_agreement`).
    """

    name: str
    dtype: str
    status: str
    tolerance: float
    errors: dict = field(default_factory=dict)
    detail: str = ""
    tier: str = "basic"
    digits: dict = field(default_factory=dict)

    @property
    def failed(self):
        return self.status in ("mismatch", "error")

    @property
    def min_digits(self):
        """The fewest digits of agreement over the arrays compared (None when none was)."""
        return min(self.digits.values()) if self.digits else None


def compare(case, y, grads, tolerance):
    """Compare ``y`` and ``grads`` (None: forward only) with ``case``; return a :class:`CaseResult`."""
    errors, problems = {}, []
    try:
        errors["y"] = relative_error(y, case.y)
    except ValueError as exc:
        problems.append(f"y: {exc}")
    if grads is not None:
        missing = sorted(set(case.grads) - set(grads))
        if missing:
            problems.append(f"missing gradients {missing}")
        for name in sorted(set(case.grads) & set(grads)):
            try:
                errors[f"grad.{name}"] = relative_error(grads[name], case.grads[name])
            except ValueError as exc:
                problems.append(f"grad.{name}: {exc}")
    bad = [k for k, e in errors.items() if not e <= tolerance]
    if bad:
        problems.append("above tolerance: " + ", ".join(bad))
    return CaseResult(case.name, case.entry["dtype"], "mismatch" if problems else "ok", tolerance, errors,
                      "; ".join(problems), tier=_tier(case),
                      digits={k: digits_of_agreement(e) for k, e in errors.items()})


def _tier(case):
    return case.entry.get("tier", "basic")


def run_backend(case, backend):
    """Forward and backward of ``case`` on a ``kinn_ref`` backend (through ``KINNLayers`` for the seed layer).

    Returns
    -------
    y : ndarray
    grads : dict of ndarray
    """
    if case.entry["layer"] == "KINNLayers":
        spec = case.spec
        layer = KINNLayers(spec.n_nodes, spec.dt, dtype=case.x.dtype, backend=backend)
        layer.params.update({k: v.copy() for k, v in case.params.items()})
        y = layer.forward(case.x, n_steps=spec.n_steps)
        dx = layer.backward(case.dy)
        return y, dict(layer.grads, x=dx)
    y, tape = kinn_ref.forward(case.spec, case.params, case.x, case.V0, backend=backend)
    return y, kinn_ref.backward(case.spec, case.params, tape, case.dy)


def _tolerance(case, gpu):
    return case.entry["tolerance"]["gpu" if gpu else "cpu"]


def verify_backend(backend, directory=None, select=None, progress=None, jobs=1, tiers=None):
    """Run every golden case on ``backend`` and compare forward values and all gradients.

    ``tiers`` (a sequence of tier names, default all) selects cases as ``select`` does.
    ``progress(done, total, result)``, when given, is called after each case. With ``jobs > 1`` the cases
    run in that many worker processes, grouped by what a compiling backend compiles for them
    (:func:`kernel_group`: cases of one group run in one process, so each kernel is compiled once); the
    results are the same and come back in suite order.

    Returns
    -------
    list of CaseResult
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    _, cases = load_suite(directory, select, tiers)
    if jobs == 1 or len(cases) == 1:
        return _verify_cases(backend, cases, progress)
    groups = {}
    for case in cases:
        groups.setdefault(kernel_group(case), []).append(case.name)
    order = sorted(groups.values(), key=len, reverse=True)     # largest first: better balance
    by_name, total = {}, len(cases)
    import multiprocessing
    with multiprocessing.get_context("spawn").Pool(min(jobs, len(order))) as pool:
        for results in pool.imap_unordered(_verify_group, [(backend, directory, names) for names in order]):
            for r in results:
                by_name[r.name] = r
                if progress is not None:
                    progress(len(by_name), total, r)
    return [by_name[case.name] for case in cases]


def kernel_group(case):
    """What a compiling backend builds for ``case``: integrator, readout, coupling family, dtype.

    The layer class does not change the kernels, and a one-cell ``last`` readout is the ``cells`` output
    (eqs. 18-19 with K = 1), which the numba backend runs on the same kernels."""
    spec = case.entry["spec"]
    family = "matrix" if spec["coupling"] in ("dense", "kirchhoff") else spec["coupling"]
    readout = "cells" if spec["readout"] == "last" and spec.get("order", 1) == 1 else spec["readout"]
    return spec["integrator"], readout, family, case.entry["dtype"]


def _verify_cases(backend, cases, progress):
    return _check_cases(cases, backend in GPU_BACKENDS, lambda case: run_backend(case, backend),
                        errors=(ValueError, FloatingPointError, ArithmeticError), progress=progress)


def _verify_group(job):
    """Worker of :func:`verify_backend`: the named cases of one group."""
    backend, directory, names = job
    wanted = set(names)
    _, cases = load_suite(directory)
    return _verify_cases(backend, [c for c in cases if c.name in wanted], None)


def load_adapter(target):
    """The adapter named by ``module:function`` or ``path/to/file.py:function``."""
    if not isinstance(target, str) or ":" not in target:
        raise ValueError(f"impl must be 'module:function' or 'path/to/file.py:function', got {target!r}")
    module_name, _, func = target.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"impl file {path} does not exist")
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"impl module {module_name!r} cannot be imported: {exc}") from exc
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"impl {target!r}: {module_name} has no function {func!r}")
    return fn


def check_implementation(adapter, directory=None, select=None, gpu=False, progress=None, tiers=None):
    """Check an outside implementation, given as an adapter function, against the suite
    (``progress`` and ``tiers`` as for :func:`verify_backend`).

    Returns
    -------
    list of CaseResult
    """
    def run(case):
        return adapter(spec_to_dict(case.spec), {k: v.copy() for k, v in case.params.items()}, case.x.copy(),
                       None if case.V0 is None else case.V0.copy(), case.dy.copy())

    _, cases = load_suite(directory, select, tiers)
    # an outside implementation may fail in any way: report it, do not crash
    return _check_cases(cases, gpu, run, errors=(Exception,), unsupported=(NotImplementedError,),
                        progress=progress)


def _check_cases(cases, gpu, run, errors, unsupported=(), progress=None):
    """Compare ``run(case) -> (y, grads)`` with every case; ``unsupported`` and ``errors`` (exception
    classes, checked in that order) are reported per case instead of raised."""
    results = []
    for case in cases:
        tol = _tolerance(case, gpu)
        try:
            y, grads = run(case)
        except unsupported as exc:
            results.append(CaseResult(case.name, case.entry["dtype"], "unsupported", tol, detail=str(exc),
                                      tier=_tier(case)))
        except errors as exc:
            results.append(CaseResult(case.name, case.entry["dtype"], "error", tol,
                                      detail=f"{type(exc).__name__}: {exc}", tier=_tier(case)))
        else:
            results.append(compare(case, y, grads, tol))
        if progress is not None:
            progress(len(results), len(cases), results[-1])
    return results


def digits_by_tier(results):
    """The fewest digits of agreement per tier over the cases compared, ``{tier: digits}`` in tier order."""
    from .golden_cases import TIERS
    by_tier = {}
    for r in results:
        if r.min_digits is not None:
            by_tier[r.tier] = min(by_tier.get(r.tier, DIGITS_CAP), r.min_digits)
    return {t: by_tier[t] for t in sorted(by_tier, key=lambda t: TIERS.index(t) if t in TIERS else len(TIERS))}


def format_table(results):
    """A per-case text table of :class:`CaseResult` (with the fewest digits of agreement over its arrays),
    a summary line and the fewest digits per tier."""
    lines = [f"{'case':<64} {'tier':<8} {'dtype':<8} {'status':<11} {'y':>9} {'worst grad':>10} {'digits':>6}  "
             f"{'tol':>7}  detail"]
    for r in results:
        grad_errors = {k: v for k, v in r.errors.items() if k.startswith("grad.")}
        y = f"{r.errors['y']:.1e}" if "y" in r.errors else "-"
        g = f"{max(grad_errors.values()):.1e}" if grad_errors else "-"
        d = f"{r.min_digits:.1f}" if r.min_digits is not None else "-"
        lines.append(f"{r.name:<64} {r.tier:<8} {r.dtype:<8} {r.status:<11} {y:>9} {g:>10} {d:>6}  "
                     f"{r.tolerance:7.0e}  {r.detail}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "mismatch", "error", "unsupported")}
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()) + f" (of {len(results)} cases)")
    digits = digits_by_tier(results)
    if digits:
        lines.append("fewest digits of agreement per tier: " + ", ".join(f"{t} {d:.1f}" for t, d in digits.items()))
    return "\n".join(lines)


__all__ = ["CaseResult", "GoldenIntegrityError", "check_implementation", "compare", "digits_by_tier",
           "digits_of_agreement", "format_table", "kernel_group", "load_adapter", "relative_error", "run_backend",
           "verify_backend"]
