"""High-precision evaluation of golden cases: forward values and every gradient (docs/golden.md).

The forward value is :func:`analysis.discrete_map.evaluate` in mpmath at :data:`DIGITS` significant digits,
on the exact values of the (float64 or float32) inputs. Gradients of ``L = sum(dy * y)`` are complex-step
derivatives, ``dL/dq = Im L(q + i h) / h`` with ``h = 10^-40``, one complex evaluation per scalar:

- the map is analytic in every input (sums, products, quotients, ``exp``, ``log(1 + exp)``, linear solves;
  the pivot choice of the elimination is piecewise constant and does not break analyticity), so the
  truncation error is ``h^2 |L'''| / 6 ~ 1e-80`` relative;
- there is no subtractive cancellation: the real and imaginary parts are separate ``DIGITS``-digit numbers;
- the only rounding is the working precision (1e-50) amplified by the conditioning of the few-step map.

Every value is rounded to float64 once, at the end. :func:`complex_step_agreement` measures the agreement
of two step sizes as a check on these claims (tests assert more than 30 matching digits).
"""
import numpy as np

from .discrete_map import MpArithmetic, evaluate, to_objects

DIGITS = 50
STEP = "1e-40"


def _to_float(a):
    """Round an object array of mpmath numbers (real parts) to float64, to nearest."""
    out = np.empty(a.shape)
    for idx in np.ndindex(a.shape):
        v = a[idx]
        out[idx] = float(v.real if hasattr(v, "imag") else v)
    return out


def _loss(spec, arith, exact, dy):
    y = evaluate(spec, arith, {k: v for k, v in exact.items() if k not in ("x", "V0")}, exact["x"],
                 exact.get("V0"))
    return y, sum(w * v for w, v in zip(dy.reshape(-1), y.reshape(-1)))


def _gradients(spec, arith, exact, dy, h):
    mp = arith.mp
    grads = {}
    for name, value in exact.items():
        g = np.empty(value.shape, dtype=object)
        for idx in np.ndindex(value.shape):
            trial = dict(exact, **{name: value.copy()})
            trial[name][idx] = value[idx] + mp.mpc(0, h)
            g[idx] = _loss(spec, arith, trial, dy)[1].imag / h
        grads[name] = g
    return grads


def _exact_inputs(arith, params, x, V0):
    exact = {k: to_objects(arith, v) for k, v in params.items()}
    exact["x"] = to_objects(arith, x)
    if V0 is not None:
        exact["V0"] = to_objects(arith, V0)
    return exact


def golden_values(spec, params, x, V0, dy, digits=DIGITS, step=STEP):
    """:func:`golden_values_exact` rounded once to float64 (see there): ``(y, grads)`` as float64 arrays."""
    y, grads = golden_values_exact(spec, params, x, V0, dy, digits, step)
    return _to_float(y), {k: _to_float(v) for k, v in grads.items()}


def golden_values_exact(spec, params, x, V0, dy, digits=DIGITS, step=STEP):
    """Forward output and gradients of a layer in high precision, as mpmath numbers at ``digits`` digits.

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    x : ndarray
    V0 : ndarray or None
    dy : ndarray
        Cotangent of the output.
    digits : int
        Working precision (significant decimal digits).
    step : str
        Complex step ``h``.

    Returns
    -------
    y : ndarray of mpmath numbers
        The output at ``digits`` digits (real values).
    grads : dict of ndarray of mpmath numbers
        Keys of ``params``, ``"x"`` and, when ``V0`` is given, ``"V0"``.
    """
    arith = MpArithmetic()
    with arith.mp.workdps(digits):
        exact = _exact_inputs(arith, params, x, V0)
        w = to_objects(arith, dy)
        y, _ = _loss(spec, arith, exact, w)
        grads = _gradients(spec, arith, exact, w, arith.mp.mpf(step))
        real = np.vectorize(lambda v: v.real if hasattr(v, "imag") else v, otypes=[object])
        return real(y), {k: real(v) for k, v in grads.items()}


def complex_step_agreement(spec, params, x, V0, dy, name, index, digits=DIGITS, steps=("1e-30", "1e-40")):
    """Matching decimal digits of one gradient entry computed with two complex steps.

    Returns
    -------
    float
        ``-log10(|g1 - g2| / |g2|)`` at ``digits`` working digits (``digits`` when they agree exactly).
    """
    arith = MpArithmetic()
    mp = arith.mp
    with mp.workdps(digits):
        exact = _exact_inputs(arith, params, x, V0)
        w = to_objects(arith, dy)
        values = []
        for h in steps:
            h = mp.mpf(h)
            trial = dict(exact, **{name: exact[name].copy()})
            trial[name][index] = exact[name][index] + mp.mpc(0, h)
            values.append(_loss(spec, arith, trial, w)[1].imag / h)
        diff = abs(values[0] - values[1])
        if diff == 0:
            return float(digits)
        return float(-mp.log10(diff / abs(values[1])))
