"""The backends blow up exactly where the analysis says: runs just below and just above ``dt_max``.

With zero input, zero bias and zero leak current the layer's update is ``Y^{n+1} = M Y^n``, so from a random
initial state the norm of the state grows like ``rho(M)^n``. For every integrator with a finite ``dt_max``,
each backend's forward pass is run at ``below * dt_max`` (the analysis predicts ``rho < 1``: the state must
stay bounded) and at ``above * dt_max`` (``rho > 1``: the state must grow by the predicted factor, at the
predicted rate); integrators that are stable for every ``dt`` are run at a large ``dt`` and must stay
bounded. Every backend's states are also compared with the NumPy reference's.
"""
import math
from dataclasses import dataclass

import numpy as np

import kinn_ref
from kinn_ref.spec import INTEGRATORS

from .stability import layer_cells, cell_dt_max, cell_spectral_radius

BOUND = 10.0        # "bounded": the state norm never exceeds BOUND times the initial norm
GROWTH = 1e6        # "grows": the run is long enough for the predicted growth rho^n to reach GROWTH
BOUNDED_STEPS = 20  # the shortest run


@dataclass
class BackendRun:
    """One forward run of the validation.

    Attributes
    ----------
    backend, integrator : str
    side : {"below", "above", "unbounded"}
    dt, dt_max : float
    predicted_rho : float
        Spectral radius of the amplification matrix at ``dt`` (analysis).
    steps : int
    growth : float
        Largest ``||Y^n|| / ||Y^0||`` over the run.
    observed_rate : float
        ``(||Y^T|| / ||Y^{T/2}||)^(1 / (T - T/2))``, the measured growth per step.
    agrees_with_numpy : bool
    agrees : bool
        Bounded when the analysis predicts ``rho <= 1``; growth by ``>= sqrt(GROWTH)`` at a rate within 5 % of
        ``rho`` when it predicts ``rho > 1``; and the states agree with the NumPy backend's.
    """

    backend: str
    integrator: str
    side: str
    dt: float
    dt_max: float
    predicted_rho: float
    steps: int
    growth: float
    observed_rate: float
    agrees_with_numpy: bool
    agrees: bool


def _homogeneous(spec, params):
    """Parameters with zero bias and zero leak: the update is then ``Y <- M Y``."""
    p = {k: np.array(v) for k, v in params.items()}
    p["b"][...] = 0
    p["leak"][...] = 0
    return p


def _trajectory_norms(spec, params, V0, backend):
    B = V0.shape[0]
    x = np.zeros(spec.input_shape(B), dtype=V0.dtype)
    y, tape = kinn_ref.forward(spec, params, x, V0, backend=backend, on_nonfinite="flag")
    return y, np.linalg.norm(y.reshape(B, spec.n_steps, -1), axis=(0, 2))


def validate_backends(spec, params, backends=None, integrators=INTEGRATORS, below=0.9, above=1.1,
                      max_steps=5000, unbounded_dt=100.0, seed=0):
    """Run each backend below and above each integrator's ``dt_max`` for the layer ``(spec, params)``.

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    backends : sequence of str, optional
        Default: ``kinn_ref.available_backends()``.
    integrators : sequence of str
    below, above : float
        Factors of ``dt_max`` (``below < 1 < above``).
    max_steps : int
        Cap on the run length (a run lasts until ``rho^n`` reaches :data:`GROWTH` at ``above * dt_max``).
    unbounded_dt : float
        For integrators without a finite ``dt_max``: ``dt`` in units of the fastest time constant.
    seed : int
        Seed of the random initial state.

    Returns
    -------
    list of BackendRun
    """
    if not 0 < below < 1 < above:
        raise ValueError(f"below and above must satisfy 0 < below < 1 < above, got {below!r}, {above!r}")
    backends = kinn_ref.available_backends() if backends is None else tuple(backends)
    cells = layer_cells(spec, params)
    p = _homogeneous(spec, params)
    dtype = np.asarray(params["W"]).dtype
    rng = np.random.default_rng(seed)
    V0 = rng.standard_normal((2, spec.order, spec.total_nodes)).astype(dtype)
    fastest = max(float(np.max(np.abs(c.eigenvalues()))) for c in cells)
    runs = []
    for name in integrators:
        dt_max = min(cell_dt_max(c, name, k).dt_max for k, c in enumerate(cells))
        if dt_max == 0:
            continue
        if math.isinf(dt_max):
            points = [("unbounded", unbounded_dt / fastest)]
        else:
            points = [("below", below * dt_max), ("above", above * dt_max)]
        rho = {side: max(cell_spectral_radius(c, name, dt) for c in cells) for side, dt in points}
        growing = [r for r in rho.values() if r > 1]
        steps = BOUNDED_STEPS if not growing else int(min(max_steps, max(BOUNDED_STEPS, math.ceil(
            math.log(GROWTH) / math.log(min(growing))))))
        for side, dt in points:
            run_spec = spec.replace(integrator=name, dt=float(dt), n_steps=steps, readout="cells",
                                    return_sequences=True)
            reference, _ = _trajectory_norms(run_spec, p, V0, "numpy")
            for backend in backends:
                y, norms = _trajectory_norms(run_spec, p, V0, backend)
                runs.append(_assess(backend, name, side, dt, dt_max, rho[side], steps, y, norms, reference,
                                    float(np.linalg.norm(V0))))
    return runs


def _assess(backend, name, side, dt, dt_max, rho, steps, y, norms, reference, initial):
    with np.errstate(all="ignore"):
        finite = np.isfinite(norms).all()
        growth = float(np.max(norms) / initial) if finite else math.inf
        half = steps // 2
        rate = float((norms[-1] / norms[half - 1]) ** (1.0 / (steps - half))) if finite and norms[half - 1] > 0 \
            else math.nan
        scale = np.abs(reference).max(axis=(0, 2), keepdims=True)
        same = bool(np.all(np.abs(y - reference) <= 1e-9 * scale + 1e-300)) if finite else False
    if rho <= 1:
        ok = growth <= BOUND
    else:
        ok = growth >= math.sqrt(GROWTH) and abs(rate - rho) <= 0.05 * rho
    return BackendRun(backend, name, side, float(dt), float(dt_max), float(rho), steps, growth, rate, same,
                      bool(ok and same))
