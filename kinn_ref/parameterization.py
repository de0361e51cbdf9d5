"""Parameterization and initialisation (docs/math.md, section 3, eqs. 8-11).

Raw parameter arrays (the keys of ``params``) are mapped to the *circuit*: capacitance ``C``, leak
conductance ``g``, leak current ``leak``, cascade gain ``beta`` (all per node, ``(K, N)``) and the
effective coupling parameter ``A`` (``(K, N, N)`` for dense/kirchhoff, ``(K, H)`` for grid).
"""
import functools
from dataclasses import dataclass

import numpy as np

from ._checks import FLOAT_DTYPES, check_array, check_seed
from .spec import check_spec


def softplus(z):
    """``log(1 + exp(z))`` without overflow (eq. 8)."""
    return np.logaddexp(0.0, z).astype(z.dtype, copy=False)


def softplus_grad(z):
    """``d softplus / dz = sigmoid(z)``, computed without overflow (eq. 8)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def softplus_inverse(y):
    """Inverse of :func:`softplus` for ``y > 0``: ``log(expm1(y))``."""
    y = np.asarray(y, dtype=np.float64)
    return np.where(y > 30.0, y, np.log(np.expm1(np.minimum(y, 30.0))))


@dataclass
class Circuit:
    """Physical quantities of a layer, per node of each cell.

    Attributes
    ----------
    C, g, leak, beta : ndarray, shape (K, N)
        Capacitance, leak conductance, leak current and cascade gain (``beta[0]`` unused).
    A : ndarray or None
        Effective coupling parameter: the matrix ``G`` (dense), the symmetric conductance matrix ``S``
        with zero diagonal (kirchhoff), the per-channel edge conductance ``s`` of shape ``(K, H)`` (grid),
        or None (none).
    """

    C: np.ndarray
    g: np.ndarray
    leak: np.ndarray
    beta: np.ndarray
    A: np.ndarray = None


def _expand(spec, a):
    """Per-channel ``(K, H)`` to per-node ``(K, P*H)``; node index ``p*H + h`` (eq. 7)."""
    return np.tile(a, (1, spec.n_points)) if spec.coupling == "grid" else a


def _reduce(spec, d):
    """Adjoint of :func:`_expand`: sum the per-node gradient over grid points."""
    if spec.coupling != "grid":
        return d
    K = d.shape[0]
    return d.reshape(K, spec.n_points, spec.n_nodes).sum(axis=1)


@functools.lru_cache(maxsize=64)
def _offdiag_mask(n, dtype):
    mask = (1 - np.eye(n)).astype(dtype)
    mask.flags.writeable = False            # shared by every call with these arguments
    return mask


def make_circuit(spec, params):
    """Circuit of a layer from its raw parameters (eqs. 8-11).

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray
        Raw parameters, keys of ``spec.param_shapes()``.

    Returns
    -------
    Circuit
    """
    positive = spec.param == "positive"
    C_raw = params["C_raw"]
    C = spec.c_min + softplus(C_raw) if positive else C_raw.copy()
    if not positive and np.any(C <= 0):
        k, n = np.argwhere(C <= 0)[0]
        raise ValueError(f"params['C_raw'] must be > 0 in param='raw' mode (it is the capacitance); "
                         f"entry [{k}, {n}] is {C[k, n]!r}")
    g = softplus(params["g_raw"]) if positive else params["g_raw"].copy()
    A = None
    if spec.coupling == "dense":
        A = params["G_raw"]
    elif spec.coupling == "kirchhoff":
        R = params["G_raw"]
        R_sym = 0.5 * (R + np.swapaxes(R, 1, 2))
        mask = _offdiag_mask(spec.n_nodes, R.dtype)
        A = (softplus(R_sym) if positive else R_sym) * mask
    elif spec.coupling == "grid":
        A = softplus(params["G_raw"]) if positive else params["G_raw"]
    C = C.astype(C_raw.dtype, copy=False)
    return Circuit(C=_expand(spec, C), g=_expand(spec, g), leak=_expand(spec, params["leak"]),
                   beta=_expand(spec, params["beta"]), A=A)


def circuit_vjp(spec, params, d_circuit):
    """Gradients of the raw parameters from the gradients of the circuit (eq. 35, the adjoint of eqs. 8-11).

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray
    d_circuit : Circuit
        Gradients with respect to each circuit quantity, shapes as in :class:`Circuit`.

    Returns
    -------
    dict of ndarray
        ``C_raw, g_raw, leak, beta`` and ``G_raw`` where the coupling has one.
    """
    positive = spec.param == "positive"
    dC = _reduce(spec, d_circuit.C)
    dg = _reduce(spec, d_circuit.g)
    grads = {
        "C_raw": dC * softplus_grad(params["C_raw"]) if positive else dC,
        "g_raw": dg * softplus_grad(params["g_raw"]) if positive else dg,
        "leak": _reduce(spec, d_circuit.leak),
        "beta": _reduce(spec, d_circuit.beta),
    }
    grads["beta"][0] = 0.0
    if spec.coupling == "dense":
        grads["G_raw"] = d_circuit.A
    elif spec.coupling == "kirchhoff":
        R = params["G_raw"]
        mask = _offdiag_mask(spec.n_nodes, R.dtype)
        d_sym = d_circuit.A * mask
        if positive:
            d_sym = d_sym * softplus_grad(0.5 * (R + np.swapaxes(R, 1, 2)))
        grads["G_raw"] = 0.5 * (d_sym + np.swapaxes(d_sym, 1, 2))
    elif spec.coupling == "grid":
        grads["G_raw"] = d_circuit.A * softplus_grad(params["G_raw"]) if positive else d_circuit.A
    return grads


def init_params(spec, seed=0, dtype=np.float64):
    """Initial raw parameters for ``spec``.

    The initial circuit has ``C = 1``, ``g = 1``, ``leak = 0``, ``beta = 1``, ``W ~ N(0, 1/D)`` and
    ``b = 0``. Dense ``G`` is ``N(0, 1)`` in ``raw`` mode (the seed's choice) and ``N(0, 1/(4N))`` in
    ``positive`` mode (spectral radius about 0.5 < g: a stable start); kirchhoff conductances start near
    ``1/N`` and grid edge conductances at 1.

    Parameters
    ----------
    spec : LayerSpec
    seed : int or numpy.random.Generator
        An integer >= 0, or a generator to draw from.
    dtype : {numpy.float64, numpy.float32}

    Returns
    -------
    dict of ndarray

    Raises
    ------
    ValueError
        Naming ``spec``, ``seed`` or ``dtype`` when it is not what is expected.
    """
    check_spec(spec)
    check_seed("seed", seed)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}") from None
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    rng = np.random.default_rng(seed)
    shapes = spec.param_shapes()
    K, H, D = spec.order, spec.n_nodes, spec.in_features
    positive = spec.param == "positive"
    one = np.ones((K, H))
    p = {
        "W": rng.standard_normal((H, D)) / np.sqrt(D),
        "b": np.zeros(H),
        "C_raw": softplus_inverse(one - spec.c_min) if positive else one.copy(),
        "g_raw": softplus_inverse(one) if positive else one.copy(),
        "leak": np.zeros((K, H)),
        "beta": one.copy(),
    }
    if spec.coupling == "dense":
        p["G_raw"] = rng.standard_normal((K, H, H)) * (0.5 / np.sqrt(H) if positive else 1.0)
    elif spec.coupling == "kirchhoff":
        base = softplus_inverse(1.0 / H) if positive else 1.0 / H
        R = base + 0.1 * rng.standard_normal((K, H, H)) * (1.0 if positive else 1.0 / H)
        p["G_raw"] = 0.5 * (R + np.swapaxes(R, 1, 2))
    elif spec.coupling == "grid":
        p["G_raw"] = softplus_inverse(one) if positive else one.copy()
    out = {k: np.array(v, dtype=dtype, order="C") for k, v in p.items()}  # independent arrays
    assert {k: v.shape for k, v in out.items()} == shapes
    return out


def check_params(spec, params, finite=True):
    """Validate ``spec`` and ``params`` against it; return the computation dtype.

    ``finite=False`` checks everything but the values (for a caller that compares them with arrays already
    checked, as ``backward`` does with its tape's copy).
    """
    check_spec(spec)
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of arrays with keys {sorted(spec.param_shapes())}, "
                         f"got {type(params).__name__}")
    shapes = spec.param_shapes()
    missing, extra = set(shapes) - set(params), set(params) - set(shapes)
    if missing or extra:
        raise ValueError(f"params must have exactly the keys {sorted(shapes)}; missing {sorted(missing)}, "
                         f"unexpected {sorted(extra)}")
    dtype = np.asarray(params["W"]).dtype
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"params['W'] must have dtype float64 or float32, got {dtype}")
    for name, shape in shapes.items():
        check_array(f"params[{name!r}]", params[name], shape, dtype, finite)
    tiny = np.finfo(dtype).tiny
    if spec.dt < tiny:
        raise ValueError(f"dt {spec.dt!r} is too small for {dtype} params: below {tiny:.4g} (the smallest normal "
                         f"{dtype}) the step loses its precision and 1/dt overflows; use float64 params or a "
                         "larger dt")
    return dtype
