"""Stability guard: keep each KINN layer's ``dt`` inside the stable region of its integrator.

After an optimizer step the conductances and capacitances have moved, and with them the largest stable
step ``dt_max`` (docs/math.md, section 6). The guard measures the spectral radius ``rho`` of each layer's
one-step amplification map at its current ``dt``; when ``rho > 1`` it lowers the layer's ``dt`` to
``safety * dt_max``.

Two ways to get ``rho``, chosen by layer size:

- layers with ``K*N <= dense_limit`` use the core's exact dense analysis,
  :func:`kinn_ref.linear_analysis.spectral_radius` and :func:`~kinn_ref.linear_analysis.max_stable_dt`
  (eigenvalues of the ``(K*N, K*N)`` amplification matrix);
- larger layers (grid layers, wide dense layers) use a matrix-free power iteration on the integrator's own
  step: ``rho ~ (||M^m v|| / ||v||)^(1/m)`` averaged over the last half of ``power_iterations`` normalised
  iterations, and a bisection on ``dt`` with that estimate. It is an estimate (from below for a
  non-normal ``M`` with few iterations), not a bound; ``safety`` absorbs its error.

Layers that are stable for every ``dt`` by construction are skipped: backward Euler on a passive circuit
(``param="positive"`` with coupling none, kirchhoff or grid) and exponential Euler with coupling none or
kirchhoff and ``param="positive"``.
"""
import logging
import warnings

import numpy as np

from .._checks import check_choice, check_positive_int, check_real
from ..coupling import make_coupling
from ..divergence import unconditionally_stable
from ..errors import UnstableStepError, UnstableStepWarning
from ..integrators import INTEGRATORS
from ..linear_analysis import max_stable_dt, spectral_radius
from ..parameterization import make_circuit
from .regularization import kinn_layers

logger = logging.getLogger(__name__)


def power_spectral_radius(spec, params, dt, iterations=100, n_vectors=4, seed=0):
    """Matrix-free estimate of the amplification map's spectral radius at step ``dt``.

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray
    dt : float
    iterations : int
        Power iterations; the estimate averages the log growth over the last half.
    n_vectors : int
        Random start vectors iterated together (the largest estimate is returned).
    seed : int
        Seed of the start vectors (fixed, so the guard is deterministic).

    Returns
    -------
    float
    """
    circuit = make_circuit(spec, params)
    circuit.leak = np.zeros_like(circuit.leak)
    coupling = make_coupling(spec, circuit)
    integrator = INTEGRATORS[spec.integrator]
    ctx = integrator.prepare(circuit, coupling, float(dt))
    dtype = circuit.C.dtype
    Y = np.random.default_rng(seed).standard_normal((n_vectors, spec.order, spec.total_nodes)).astype(dtype)
    zero = np.zeros((n_vectors, spec.total_nodes), dtype)
    logs = np.zeros((iterations, n_vectors))
    with np.errstate(all="ignore"):
        for i in range(iterations):
            Y /= np.linalg.norm(Y.reshape(n_vectors, -1), axis=1)[:, None, None]
            Y = integrator.step(ctx, Y, zero)
            norms = np.linalg.norm(Y.reshape(n_vectors, -1), axis=1)
            if not np.all(np.isfinite(norms)):
                return float("inf")
            logs[i] = np.log(np.maximum(norms, np.finfo(dtype).tiny))
    return float(np.exp(logs[iterations // 2:].mean(axis=0).max()))


class StabilityGuard:
    """Lower a layer's ``dt`` to ``safety * dt_max`` when its integrator is unstable at the current ``dt``.

    The trainer applies it before its first step (a ``dt`` unstable from the start is lowered before the
    first forward pass) and after every optimizer step.

    Parameters
    ----------
    safety : float
        Fraction of ``dt_max`` used as the new step, in (0, 1).
    dense_limit : int
        Largest ``K*N`` analysed with the dense eigenvalue method; larger layers use power iteration.
    power_iterations : int
    margin : float
        ``rho <= 1 + margin`` counts as stable (>= 0).
    on_unstable : {"raise", "warn"}
        What to do when a layer's circuit is unstable for every ``dt`` (a growing mode of the continuous
        system, which no step size removes): ``"raise"`` (default) raises
        :class:`~kinn_ref.errors.UnstableStepError` before any ``dt`` is changed; ``"warn"`` issues an
        :class:`~kinn_ref.errors.UnstableStepWarning`, leaves that layer's ``dt`` and lets training go on.
    """

    def __init__(self, safety=0.9, dense_limit=256, power_iterations=100, margin=1e-9, on_unstable="raise"):
        self.safety = check_real("safety", safety, 0.0, 1.0, low_open=True, high_open=True)
        self.dense_limit = check_positive_int("dense_limit", dense_limit, minimum=0)
        self.power_iterations = check_positive_int("power_iterations", power_iterations)
        self.margin = check_real("margin", margin, 0.0)
        self.on_unstable = check_choice("on_unstable", on_unstable, ("raise", "warn"))

    def config(self):
        config = {"safety": self.safety, "dense_limit": self.dense_limit,
                  "power_iterations": self.power_iterations, "margin": self.margin}
        if self.on_unstable != "raise":  # the default is left out, so runs saved before the option resume
            config["on_unstable"] = self.on_unstable
        return config

    def __repr__(self):
        return "StabilityGuard(" + ", ".join(f"{k}={v!r}" for k, v in dict(self.config(),
                                             on_unstable=self.on_unstable).items()) + ")"

    def _dense(self, spec):
        return spec.order * spec.total_nodes <= self.dense_limit

    def spectral_radius(self, spec, params, dt):
        """``rho`` at ``dt`` by the method this guard uses for ``spec``."""
        if self._dense(spec):
            return spectral_radius(spec, params, dt)
        return power_spectral_radius(spec, params, dt, self.power_iterations)

    def max_stable_dt(self, spec, params, dt_unstable):
        """Largest stable ``dt`` below ``dt_unstable`` (0.0 when none: the continuous system is unstable)."""
        if self._dense(spec):
            return max_stable_dt(spec, params)
        lo, hi = 0.0, dt_unstable
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.spectral_radius(spec, params, mid) <= 1 + self.margin else (lo, mid)
        return lo

    def apply(self, model):
        """Check every KINN layer of ``model``; lower unstable ``dt`` in place.

        Returns
        -------
        list of dict
            One ``{"layer", "old_dt", "new_dt"}`` per change (``new_dt`` is None when no ``dt`` is stable
            and ``on_unstable="warn"``: the circuit itself is unstable and only the optimizer can bring it
            back).

        Raises
        ------
        UnstableStepError
            With ``on_unstable="raise"``, when a layer is unstable for every ``dt``; no ``dt`` is changed.
        """
        plan = []
        for prefix, layer in kinn_layers(model):
            spec = layer.spec
            if unconditionally_stable(spec):
                continue
            if self.spectral_radius(spec, layer.params, spec.dt) <= 1 + self.margin:
                continue
            plan.append((prefix, layer, self.max_stable_dt(spec, layer.params, spec.dt)))
        growing = [(prefix, layer.spec) for prefix, layer, dt_max in plan if dt_max <= 0.0]
        if growing and self.on_unstable == "raise":
            prefix, spec = growing[0]
            names = ", ".join(p for p, _ in growing)
            raise UnstableStepError(f"{names}: the circuit is unstable for every dt (a growing mode; dt is "
                                    f"{spec.dt:g}), so no step size can make it stable; lower the learning "
                                    "rate or the initial conductances, or pass StabilityGuard(on_unstable='warn') "
                                    "to train on", spec.dt, 0.0, spec.integrator)
        changes = []
        for prefix, layer, dt_max in plan:
            spec = layer.spec
            if dt_max <= 0.0:
                warnings.warn(f"{prefix}: the circuit is unstable for every dt (a growing mode); dt left at "
                              f"{spec.dt:g}", UnstableStepWarning, stacklevel=2)
                changes.append({"layer": prefix, "old_dt": spec.dt, "new_dt": None})
                continue
            new_dt = self.safety * min(dt_max, spec.dt)
            layer.spec = spec.replace(dt=new_dt)
            logger.info("%s: dt %g -> %g (dt_max %g)", prefix, spec.dt, new_dt, dt_max)
            changes.append({"layer": prefix, "old_dt": spec.dt, "new_dt": new_dt})
        return changes
