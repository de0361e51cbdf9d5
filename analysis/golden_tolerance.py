"""The tolerance of a golden case from its condition (docs/golden.md, "Tolerances").

A correct implementation in floating point of unit roundoff ``u`` (float64 ``2^-53``, float32 ``2^-24``)
differs from the exact values by rounding errors that the case's computation amplifies. We measure that
amplification, the case's *condition* ``kappa``, by perturbation (:func:`case_condition`):

- every input entry (the raw parameters, ``x``, ``V0``) and the scalars ``dt`` and ``c_min`` are multiplied
  by ``1 + e s``, with ``e = 2^-24`` and a sign ``s = +-1`` drawn per entry;
- the state is multiplied by ``1 + e s`` after every step, with one sign per state entry held over all steps
  (the systematic rounding of a run that settles, whose errors add up like ``sum_n ||M^n||``, ``M`` the step's
  amplification matrix, eq. 22);
- ``kappa`` is the largest, over ``y`` and every gradient, of ``||perturbed - unperturbed|| / (||unperturbed|| e)``;
  both runs are the discrete map in float64 (:class:`analysis.discrete_map.FloatArithmetic`, complex-step
  gradients), whose own rounding (1e-16) is far below the perturbation.

The tolerance is ``max(floor, SAFETY * u * kappa)``, rounded up to 1, 2 or 5 times a power of ten
(:func:`tolerance`). ``SAFETY`` covers what one perturbation per entry and step leaves out: the several
roundings of each step's arithmetic and of the backward pass, and signs that line up. The floor is the
specification's bound for the dtype (float64 1e-12 on CPU, 1e-11 on GPU); float32 has no floor beyond
``SAFETY * u``.
"""
import math
import random

import numpy as np

from .discrete_map import FloatArithmetic, evaluate, to_objects

PERTURBATION = 2.0 ** -24
SAFETY = 32
STEP = 1e-30          # complex step of the float64 gradients
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}
# the specification's bounds (SPEC section 3): a case's tolerance is never below them
FLOORS = {"float64": {"cpu": 1e-12, "gpu": 1e-11}, "float32": {"cpu": 0.0, "gpu": 0.0}}


def _signs(rng, shape):
    return np.array([rng.choice((-1.0, 1.0)) for _ in range(int(np.prod(shape)))]).reshape(shape)


def _values(spec, inputs, dy, after_step=None):
    """Forward value and complex-step gradients of ``sum(dy * y)`` in float64 (object arrays of complex)."""
    arith = FloatArithmetic()

    def run(trial):
        return evaluate(spec, arith, {k: v for k, v in trial.items() if k not in ("x", "V0")}, trial["x"],
                        trial.get("V0"), after_step)

    y = run(inputs)
    grads = {}
    for name, value in inputs.items():
        g = np.empty(value.shape)
        for idx in np.ndindex(value.shape):
            trial = dict(inputs, **{name: value.copy()})
            trial[name][idx] = value[idx] + 1j * STEP
            g[idx] = sum(w * v for w, v in zip(dy.reshape(-1), run(trial).reshape(-1))).imag / STEP
        grads[name] = g
    return np.array([v.real for v in y.reshape(-1)]).reshape(y.shape), grads


def case_condition(case, params, x, V0, dy):
    """The condition ``kappa`` of ``case`` with inputs ``params, x, V0, dy`` (module docstring).

    Returns
    -------
    float
    """
    arith = FloatArithmetic()
    inputs = {k: to_objects(arith, np.asarray(v, np.float64)) for k, v in params.items()}
    inputs["x"] = to_objects(arith, np.asarray(x, np.float64))
    if V0 is not None:
        inputs["V0"] = to_objects(arith, np.asarray(V0, np.float64))
    w = np.asarray(dy, np.float64)
    y0, g0 = _values(case.spec, inputs, w)

    rng = random.Random(case.seed)
    e = PERTURBATION
    perturbed = {k: v * (1 + e * _signs(rng, v.shape)) for k, v in inputs.items()}
    spec = case.spec.replace(dt=case.spec.dt * (1 + e * rng.choice((-1, 1))),
                             c_min=case.spec.c_min * (1 + e * rng.choice((-1, 1))))
    state_signs = 1 + e * _signs(rng, (x.shape[0], spec.order, spec.total_nodes))
    y1, g1 = _values(spec, perturbed, w, after_step=lambda Y: Y * state_signs)

    kappa = 0.0
    for a0, a1 in [(y0, y1)] + [(g0[k], g1[k]) for k in sorted(g0)]:
        scale = np.linalg.norm(a0)
        if scale > 0:
            kappa = max(kappa, float(np.linalg.norm(a1 - a0) / (scale * e)))
    return kappa


def _round_up(t):
    """The smallest of 1, 2, 5 times a power of ten that is >= ``t`` (> 0)."""
    exponent = math.floor(math.log10(t))
    for mantissa in (1, 2, 5, 10):
        if mantissa * 10.0 ** exponent >= t * (1 - 1e-12):
            return float(f"{mantissa}e{exponent}")
    raise AssertionError(t)


def tolerance(dtype, kappa):
    """``{"cpu": ..., "gpu": ...}``: ``max(floor, SAFETY * u * max(kappa, 1))``, rounded up to 1, 2 or 5
    times a power of ten."""
    t = _round_up(SAFETY * UNIT_ROUNDOFF[dtype] * max(kappa, 1.0))
    return {device: max(floor, t) for device, floor in FLOORS[dtype].items()}
