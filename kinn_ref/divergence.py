"""The divergence pre-check of every backend's ``forward`` (docs/math.md, section 7; docs/stability.md).

Before a pass runs, :func:`check_divergence` asks whether ``spec.dt`` lies inside the stable region of the
integrator on the layer's circuit. The stacked system is block lower triangular, so the spectrum of the step
map ``M`` is the union of the cells' spectra and every cell is judged on its own (:mod:`kinn_ref.analysis.stability`):

- uncoupled cells from the closed form per node (eigenvalues ``-g/C``); grid cells from the closed-form
  Fourier modes of the mesh; dense and kirchhoff cells from the eigenvalues of their Jacobian block;
- integrators whose map is ``R(dt J)`` (euler, rk4): ``rho = max |R(dt lam)|`` over those eigenvalues;
  expeuler: 1 on a passive cell, else the eigenvalues of the cell's own ``M``; A-stable integrators
  (implicit) and the layers stable for every ``dt`` by construction (:func:`unconditionally_stable`) are not
  checked at all. What each integrator is, it says itself (:class:`kinn_ref.integrators.Method`).

A cell whose continuous system has a growing mode (an eigenvalue with positive real part: no step size
makes it decay) is not an error: one :class:`~kinn_ref.errors.UnstableStepWarning`, and the pass runs. A
cell that decays in continuous time but has ``rho > 1 + MARGIN`` at ``dt`` is a step outside the stable
region: its fastest mode grows by ``rho`` per step from the first step on. ``step``, the first step (0-based)
after which that growth has reached :data:`GROWTH` (10x), is ``ceil(log(GROWTH) / log(rho)) - 1``. A pass that runs past that
step raises :class:`~kinn_ref.errors.DivergentStepError` (``on_nonfinite="raise"``) or records an
:class:`Unstable` in ``tape.unstable`` (``"flag"``), which ``backward`` refuses; a shorter pass (a few steps
at a ``dt`` just above the limit) grows less than that and runs. ``cell`` is the first
unstable cell of the cascade.

The verdict is cached per ``(spec, dtype, circuit parameters)``: the key holds a SHA-1 digest of the bytes of
``C_raw``, ``g_raw`` and ``G_raw`` (the only parameters the step map depends on), so repeated passes with
the same parameters pay only the digest.
"""
import hashlib
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .errors import DivergentStepError, UnstableStepWarning
from .integrators import INTEGRATORS

#: A pass is refused once the unstable mode could have grown by this factor (a few steps just above the limit
#: grow less and run).
GROWTH = 10.0
MARGIN = 1e-9            # rho <= 1 + MARGIN counts as stable (the training guard's default margin)
#: Dense and kirchhoff layers of more than POWER_ABOVE stacked nodes (K * N) are first estimated by power
#: iteration on the step map (:func:`kinn_ref.training.stability.power_spectral_radius`, a few milliseconds
#: where the eigenvalues of a 256-node cell take about 0.1 s); an estimate <= 1 + POWER_MARGIN is taken as
#: stable, anything else is analysed exactly. In training every step is a new parameter version.
POWER_ABOVE = 64
POWER_ITERATIONS = 60
POWER_MARGIN = 1e-6
CACHE_SIZE = 128         # verdicts kept (least recently used dropped first)
CIRCUIT_KEYS = ("C_raw", "g_raw", "G_raw")


def unconditionally_stable(spec):
    """True when the layer's scheme is stable for every ``dt`` (passive circuit, A-stable step)."""
    if spec.param != "positive":
        return False
    return INTEGRATORS[spec.integrator].unconditionally_stable(spec.coupling)


@dataclass(frozen=True)
class Unstable:
    """A pass run with a ``dt`` outside the integrator's stable region (``tape.unstable``).

    Attributes
    ----------
    dt : float
    dt_max : float
        Largest stable ``dt`` of the layer's cells that decay in continuous time.
    rho : float
        Spectral radius of the step map of ``cell`` at ``dt`` (> 1).
    cell : int
        First cell (0-based) of the cascade whose step map grows.
    step : int
        First step (0-based) after which that cell's fastest mode has grown by :data:`GROWTH` (see the
        module docstring).
    integrator : str
    """

    dt: float
    dt_max: float
    rho: float
    cell: int
    step: int
    integrator: str

    def error(self):
        """The :class:`~kinn_ref.errors.DivergentStepError` describing this pass."""
        message = (f"dt={self.dt!r} is outside the stable region of integrator {self.integrator!r} on this "
                   f"circuit: the largest stable dt is {self.dt_max:.6g}. Cell {self.cell} decays in continuous "
                   f"time, but its step map has spectral radius {self.rho:.6g} > 1, so its state grows by that "
                   f"factor per step (by {GROWTH:g}x by step {self.step}); "
                   f"pass dt <= {self.dt_max:.6g} or integrator='implicit' (or on_nonfinite='flag' to run the "
                   "pass anyway, recorded in tape.unstable)")
        return DivergentStepError(message, self.step, self.cell, self.dt, self.dt_max, self.rho,
                                  self.integrator)


@dataclass(frozen=True)
class _Verdict:
    unstable: tuple = ()     # ((cell, rho), ...) of cells that decay in continuous time but whose step grows
    growing: tuple = ()      # cells with a growing continuous mode
    record: Unstable = None  # filled in once, when first needed


_cache = OrderedDict()
_lock = threading.Lock()


def clear_cache():
    """Forget every cached verdict (the next pass of each layer analyses it again)."""
    with _lock:
        _cache.clear()


def fingerprint(spec, params):
    """Cache key of a layer's step map: ``(spec, dtype, digest of the circuit parameters' bytes)``."""
    h = hashlib.sha1(usedforsecurity=False)      # the fastest of hashlib's digests here (0.4 ms per 512 KiB)
    for name in CIRCUIT_KEYS:
        if name in params:
            h.update(np.ascontiguousarray(params[name]).data)
    return spec, np.dtype(params["C_raw"].dtype).str, h.digest()


def _assess(spec, params):
    from .analysis.stability import (ZERO, amplification_block, finite_spectral_radius, layer_cells,
                                     stability_function_numeric)
    name, dt = spec.integrator, float(spec.dt)
    unstable, growing = [], []
    cells = layer_cells(spec, params)
    with np.errstate(all="ignore"):          # a growing mode may overflow R(dt lam): its radius is then inf
        for k, cell in enumerate(cells):
            eigs = cell.eigenvalues()
            scale = max(1.0, float(np.max(np.abs(eigs)))) if eigs.size else 1.0
            if eigs.size and float(np.max(eigs.real)) > ZERO * scale:
                growing.append(k)
                continue
            if not INTEGRATORS[name].function_of_dtJ:
                rho = 1.0 if cell.is_passive() else finite_spectral_radius(amplification_block(cell, name, dt))
            else:
                rho = float(np.max(np.abs(stability_function_numeric(name)(dt * eigs))))
            rho = rho if np.isfinite(rho) else math.inf
            if rho > 1 + MARGIN:
                unstable.append((k, rho))
    return _Verdict(tuple(unstable), tuple(growing)), cells


def _estimated_stable(spec, params):
    """A large dense or kirchhoff layer whose power-iteration estimate of the step map's radius is <= 1."""
    if spec.coupling not in ("dense", "kirchhoff") or spec.order * spec.total_nodes <= POWER_ABOVE:
        return False
    from .training.stability import power_spectral_radius
    as64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    return power_spectral_radius(spec, as64, spec.dt, iterations=POWER_ITERATIONS) <= 1 + POWER_MARGIN


def _dt_max(spec, cells, verdict):
    """Largest stable ``dt`` over the cells that decay in continuous time (failure path only)."""
    from .analysis.stability import cell_dt_max, cell_spectral_radius
    name, out = spec.integrator, math.inf
    for k, cell in enumerate(cells):
        if k in verdict.growing:
            continue
        if INTEGRATORS[name].function_of_dtJ or cell.is_passive():
            out = min(out, cell_dt_max(cell, name, k).dt_max)
            continue
        lo, hi = 0.0, float(spec.dt)        # geometric bisection of rho(M(dt)) = 1 below an unstable dt
        if cell_spectral_radius(cell, name, hi) <= 1 + MARGIN:
            continue
        lo = hi
        while lo > 1e-12 * hi and cell_spectral_radius(cell, name, lo) > 1 + MARGIN:
            lo *= 0.1
        for _ in range(60):
            if hi - lo <= 1e-7 * lo:
                break
            mid = math.sqrt(lo * hi) if lo > 0 else 0.5 * hi
            lo, hi = (mid, hi) if cell_spectral_radius(cell, name, mid) <= 1 + MARGIN else (lo, mid)
        out = min(out, lo)
    return out


def _record(spec, dtype, cells, verdict):
    cell, rho = verdict.unstable[0]
    step = 0 if math.isinf(rho) else max(0, math.ceil(math.log(GROWTH) / math.log(rho)) - 1)
    return Unstable(dt=float(spec.dt), dt_max=float(_dt_max(spec, cells, verdict)), rho=float(rho), cell=cell,
                    step=int(step), integrator=spec.integrator)


def check_divergence(spec, params, on_nonfinite, n_steps=None):
    """The pre-check of a forward pass (see the module docstring).

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray
        Checked already (:func:`~kinn_ref.parameterization.check_params`).
    on_nonfinite : {"raise", "flag"}
    n_steps : int, optional
        Steps of the pass (default ``spec.n_steps``): only a pass that runs past the record's ``step`` is refused.

    Returns
    -------
    Unstable or None
        The record for ``tape.unstable`` with ``"flag"``; None when ``dt`` is inside the stable region.

    Raises
    ------
    DivergentStepError
        With ``"raise"``, when ``dt`` is outside the stable region of a cell that decays in continuous time
        and the pass runs past the step where the growth reaches :data:`GROWTH`.
    """
    if INTEGRATORS[spec.integrator].a_stable or unconditionally_stable(spec):
        return None  # an A-stable step damps every decaying mode, and growing ones are not checked
    key = fingerprint(spec, params)
    with _lock:
        verdict = _cache.get(key)
        if verdict is not None:
            _cache.move_to_end(key)
    if verdict is None and _estimated_stable(spec, params):
        verdict = _Verdict()
        with _lock:
            _cache[key] = verdict
    if verdict is None:
        verdict, cells = _assess(spec, params)
        if verdict.unstable:
            verdict = _Verdict(verdict.unstable, verdict.growing, _record(spec, key[1], cells, verdict))
        with _lock:
            _cache[key] = verdict
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        if verdict.growing:
            cells_text = ", ".join(str(k) for k in verdict.growing)
            warnings.warn(f"the circuit of cell(s) {cells_text} grows by itself in continuous time (an eigenvalue "
                          f"of the Jacobian with positive real part), so no dt={spec.dt!r} makes it decay; the "
                          "pass runs (this is said once per layer and parameter values)",
                          UnstableStepWarning, stacklevel=3)
    if verdict.record is None or verdict.record.step >= (spec.n_steps if n_steps is None else n_steps):
        return None
    if on_nonfinite == "raise":
        raise verdict.record.error()
    return verdict.record


def refuse_unstable_tape(tape):
    """``backward``'s refusal of a tape whose forward pass ran with a ``dt`` outside the stable region."""
    record = getattr(tape, "unstable", None)
    if record is not None:
        raise ValueError(f"tape holds a forward pass run with dt={record.dt!r} outside the stable region of "
                         f"{record.integrator!r} (largest stable dt {record.dt_max:.6g}, cell {record.cell} grows "
                         f"by {record.rho:.6g} per step); there is no gradient to compute")
