"""Checking implementations against the golden suite (``kinn-ref golden verify`` and ``golden check``).

An outside implementation is checked through an *adapter*, a function

    adapter(spec, params, x, V0, dy[, case]) -> (y, grads)

- ``spec``: dict of the layer options (the fields of :class:`kinn_ref.LayerSpec`, ``grid_shape`` a list or
  None), see docs/math.md;
- ``params``: dict of raw parameter arrays (``W, b, C_raw, g_raw, leak, beta`` and ``G_raw`` where the
  coupling has one), in the case's dtype;
- ``x``: the input; ``V0``: the initial state or None; ``dy``: the cotangent of the output;
- ``case`` (when the adapter takes it): the case's :class:`~analysis.golden_adapter.CaseInfo`, with its
  ``layer`` and ``tier``;
- returns the output ``y`` and either None (forward only) or a dict of gradients of ``sum(dy * y)`` with the
  keys of ``params``, ``"x"`` and, when ``V0`` is given, ``"V0"``.

An adapter raises ``NotImplementedError`` for a case it does not support; the case is then reported as
``unsupported`` (not a failure). It may declare the gradients it implements and map the raw parameters to
its own and its gradients back (:mod:`~analysis.golden_adapter`). Named as a target (``module:function``),
it runs in a worker process with a per-case timeout (:mod:`~analysis.golden_worker`).

Statuses: ``ok`` (y and every gradient within tolerance), ``partial`` (y and the gradients the adapter
implements; the others not compared), ``forward-only`` (y alone), ``mismatch``, ``error`` (the adapter
raised, exited, timed out or returned a malformed result) and ``unsupported``.

Every comparison reports the norm-wise relative error of each array against the case's tolerance and its
digits of agreement, ``-log10`` of that error (:func:`digits_of_agreement`); :func:`format_table` shows the
fewest digits per case and per tier (:func:`digits_by_tier`).
"""
import time
from dataclasses import dataclass, field

import numpy as np

import kinn_ref
from kinn_ref.layers import KINNLayers
from kinn_ref.tolerances import relative_error

from .golden_adapter import AdapterError, BadArray, CaseInfo, Outcome, declaration, load_adapter, run_case
from .golden_cases import spec_to_dict
from .golden_store import GoldenIntegrityError, load_suite

GPU_BACKENDS = ("cuda",)

#: Every status, passing ones first; the summary counts them in this order.
STATUSES = ("ok", "partial", "forward-only", "mismatch", "error", "unsupported")
PASSED = ("ok", "partial", "forward-only")

#: Exit statuses of ``kinn-ref golden verify`` and ``check`` (docs/golden.md).
EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_NOTHING_CHECKED = 0, 1, 2, 3


DIGITS_CAP = 17.0       # digits of agreement reported for exact agreement (and never more)


def digits_of_agreement(error):
    """``-log10(error)`` of a relative error: the decimal digits of agreement, at most :data:`DIGITS_CAP`
    (``error == 0``); 0 for a non-finite error."""
    if not np.isfinite(error):
        return 0.0
    return DIGITS_CAP if error <= 10.0 ** -DIGITS_CAP else float(-np.log10(error))


@dataclass
class CaseResult:
    """Outcome of one case.

    Attributes
    ----------
    name : str
    dtype : str
    status : {"ok", "partial", "forward-only", "mismatch", "error", "unsupported"}
    tolerance : float
    errors : dict of str -> float
        Relative error of ``"y"`` and of each gradient checked.
    detail : str
        What went wrong (missing gradients, shapes, the exception) or what was not compared.
    not_compared : tuple of str
        Gradients of the case the implementation does not provide (status ``partial``), or all of them
        (``forward-only``).
    tier : str
        The case's tier (``basic``, ``stiff``, ``long``, ``edge``, ``float32``).
    seconds : float or None
        Wall time of the case.
    digits : dict of str -> float
        Digits of agreement of each array of ``errors`` (:func:`digits_of_agreement`).
    """

    name: str
    dtype: str
    status: str
    tolerance: float
    errors: dict = field(default_factory=dict)
    detail: str = ""
    not_compared: tuple = ()
    tier: str = "basic"
    seconds: float = None
    digits: dict = field(default_factory=dict)

    @property
    def failed(self):
        return self.status in ("mismatch", "error")

    @property
    def passed(self):
        return self.status in PASSED

    @property
    def min_digits(self):
        """The fewest digits of agreement over the arrays compared (None when none was)."""
        return min(self.digits.values()) if self.digits else None

    @property
    def label(self):
        """The status as the table prints it: a partial or forward-only pass is never a plain "ok"."""
        return {"partial": "ok (partial)", "forward-only": "ok (forward only)"}.get(self.status, self.status)


def _checked_array(value):
    """``value`` as an array of real, finite numbers; a ValueError saying what it is otherwise."""
    if isinstance(value, BadArray):
        raise ValueError(value.message)
    array = np.asarray(value)
    if array.dtype.kind == "c":
        raise ValueError(f"complex values ({array.dtype}); the output and gradients are real")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"not a numeric array (dtype {array.dtype})")
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{int(bad.sum())} non-finite value(s) of {array.size} (first at index {first}: "
                         f"{array[first]})")
    return array


def compare(case, y, grads, tolerance, implements=None):
    """Compare ``y`` and ``grads`` (None: forward only) with ``case``; return a :class:`CaseResult`.

    ``implements``: the gradients the implementation declares (None: every gradient of the case is
    required). Declared and returned gradients are compared; the case's others are reported as not
    compared (status ``partial``). Complex or non-finite values are a mismatch naming the array.
    """
    errors, problems, not_compared = {}, [], ()
    try:
        errors["y"] = relative_error(_checked_array(y), case.y)
    except ValueError as exc:
        problems.append(f"y: {exc}")
    if grads is None:
        not_compared = tuple(sorted(case.grads))
    else:
        expected = set(case.grads)
        wanted = expected if implements is None else expected & (set(implements) | set(grads))
        not_compared = tuple(sorted(expected - wanted))
        missing = sorted(wanted - set(grads))
        if missing:
            problems.append(f"missing gradients {missing}")
        for name in sorted(wanted & set(grads)):
            try:
                errors[f"grad.{name}"] = relative_error(_checked_array(grads[name]), case.grads[name])
            except ValueError as exc:
                problems.append(f"grad.{name}: {exc}")
    bad = [k for k, e in errors.items() if not e <= tolerance]
    if bad:
        problems.append("above tolerance: " + ", ".join(bad))
    if problems:
        status, detail = "mismatch", "; ".join(problems)
    elif grads is None:
        status, detail = "forward-only", "no gradients returned"
    elif not_compared:
        status, detail = "partial", "not compared: " + ", ".join(not_compared)
    else:
        status, detail = "ok", ""
    return CaseResult(case.name, case.entry["dtype"], status, tolerance, errors, detail, not_compared,
                      tier_of(case), digits={k: digits_of_agreement(e) for k, e in errors.items()})


def tier_of(case):
    """The case's tier (``basic`` for a manifest without tiers)."""
    return case.entry.get("tier", "basic")


def select_cases(cases, tiers=None):
    """The cases whose tier is one of ``tiers`` (None: all); a ValueError when none is left."""
    if tiers is None:
        return cases
    tiers = [tiers] if isinstance(tiers, str) else list(tiers)
    chosen = [c for c in cases if tier_of(c) in tiers]
    if not chosen:
        raise ValueError(f"no golden case of tier {', '.join(tiers)} among the {len(cases)} selected "
                         f"(tiers: {', '.join(sorted({tier_of(c) for c in cases}))})")
    return chosen


def exit_status(results):
    """The exit status of a check: 1 when a case failed, 3 when no case was compared (every case
    unsupported), 0 otherwise (2, unusable input, is raised before there are results)."""
    if any(r.failed for r in results):
        return EXIT_FAILED
    if not any(r.passed for r in results):
        return EXIT_NOTHING_CHECKED
    return EXIT_OK


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
    results are the same and come back in suite order. ``tiers`` selects cases by tier (None: all).

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
    def run(case):
        try:
            y, grads = run_backend(case, backend)
        except NotImplementedError as exc:          # BackendUnsupportedError: a layer the backend lacks
            return Outcome("unsupported", detail=str(exc))
        except (ValueError, FloatingPointError, ArithmeticError) as exc:
            return Outcome("error", detail=f"{type(exc).__name__}: {exc}")
        return Outcome("result", y=y, grads=grads)

    return _check_cases(cases, backend in GPU_BACKENDS, run, progress)


def _verify_group(job):
    """Worker of :func:`verify_backend`: the named cases of one group."""
    backend, directory, names = job
    wanted = set(names)
    _, cases = load_suite(directory)
    return _verify_cases(backend, [c for c in cases if c.name in wanted], None)


def check_implementation(adapter, directory=None, select=None, gpu=False, progress=None, timeout=None,
                         tiers=None):
    """Check an outside implementation against the suite (``progress`` as for :func:`verify_backend`).

    Parameters
    ----------
    adapter : str or callable
        A target, ``module:function`` or ``path/to/file.py:function``: the adapter runs in a worker process,
        each case within ``timeout`` seconds, and a case that hangs, exits or crashes is that case's error.
        Or the adapter itself: it runs in this process (no timeout).
    timeout : float, optional
        Seconds per case (targets only; default
        :data:`~analysis.golden_worker.DEFAULT_TIMEOUT`).
    tiers : str or list of str, optional
        Only the cases of these tiers.

    Returns
    -------
    list of CaseResult

    Raises
    ------
    AdapterError
        When the adapter cannot be loaded or declares something malformed.
    """
    _, cases = load_suite(directory, select, tiers)
    if not isinstance(adapter, str):
        if timeout is not None:
            raise ValueError("a timeout needs the adapter named as 'module:function' (it then runs in a "
                             "process of its own)")
        decl = declaration(adapter)
        return _check_cases(cases, gpu, lambda case: run_case(adapter, decl, *adapter_inputs(case)), progress)
    from .golden_worker import DEFAULT_TIMEOUT, AdapterProcess
    with AdapterProcess(adapter, DEFAULT_TIMEOUT if timeout is None else timeout) as process:
        process.start()
        return _check_cases(cases, gpu, lambda case: process.run(*adapter_inputs(case)), progress)


def adapter_inputs(case):
    """The adapter's arguments for ``case`` (its own copies) and the case's :class:`CaseInfo`."""
    spec = spec_to_dict(case.spec)
    inputs = {"spec": spec, "params": {k: v.copy() for k, v in case.params.items()}, "x": case.x.copy(),
              "V0": None if case.V0 is None else case.V0.copy(), "dy": case.dy.copy()}
    return inputs, CaseInfo.from_entry(case.entry, spec)


def check_case(case, outcome, gpu=False, seconds=None):
    """The :class:`CaseResult` of ``case`` for what running it gave (an :class:`Outcome`)."""
    tol = _tolerance(case, gpu)
    if outcome.kind == "result":
        result = compare(case, outcome.y, outcome.grads, tol, outcome.implements)
    else:
        result = CaseResult(case.name, case.entry["dtype"], outcome.kind, tol, detail=outcome.detail,
                            tier=tier_of(case))
    result.seconds = seconds
    return result


def _check_cases(cases, gpu, run, progress=None):
    """Compare ``run(case) -> Outcome`` with every case, in order."""
    results = []
    for case in cases:
        start = time.perf_counter()
        outcome = run(case)
        results.append(check_case(case, outcome, gpu, time.perf_counter() - start))
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
    lines = [f"{'case':<64} {'tier':<8} {'dtype':<8} {'status':<17} {'y':>9} {'worst grad':>10} {'digits':>6}  "
             f"{'tol':>7}  detail"]
    for r in results:
        grad_errors = {k: v for k, v in r.errors.items() if k.startswith("grad.")}
        y = f"{r.errors['y']:.1e}" if "y" in r.errors else "-"
        g = f"{max(grad_errors.values()):.1e}" if grad_errors else "-"
        d = f"{r.min_digits:.1f}" if r.min_digits is not None else "-"
        lines.append(f"{r.name:<64} {r.tier:<8} {r.dtype:<8} {r.label:<17} {y:>9} {g:>10} {d:>6}  "
                     f"{r.tolerance:7.0e}  {r.detail}".rstrip())
    lines.append(summary_line(results))
    digits = digits_by_tier(results)
    if digits:
        lines.append("fewest digits of agreement per tier: " + ", ".join(f"{t} {d:.1f}" for t, d in digits.items()))
    return "\n".join(lines)


def summary_counts(results):
    """Cases per status, in the order of :data:`STATUSES`."""
    return {s: sum(r.status == s for r in results) for s in STATUSES}


def summary_line(results):
    return ", ".join(f"{v} {k}" for k, v in summary_counts(results).items()) + f" (of {len(results)} cases)"


__all__ = ["AdapterError", "CaseResult", "GoldenIntegrityError", "STATUSES", "check_case", "check_implementation",
           "compare", "digits_by_tier", "digits_of_agreement", "exit_status", "format_table", "kernel_group",
           "load_adapter", "relative_error", "run_backend", "select_cases", "summary_counts", "verify_backend"]
