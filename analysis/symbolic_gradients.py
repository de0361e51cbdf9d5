"""Symbolic gradients of the discrete map: an independent oracle for the hand-derived backward pass
(docs/math.md, section 8).

Each piece of the discrete map of :mod:`analysis.discrete_map` is written as a SymPy expression in symbols
and differentiated by SymPy: the parameterization (raw parameters -> the parameters of the ``raw`` mode,
eqs. 8-11), the input current ``I(W, b, x)`` (eq. 3), one step ``Y^{n+1}(Y^n, I^n, p)`` (eqs. 12-16) and the
readout ``y(Y, I, p)`` (eqs. 18-20). The gradient of ``L = sum(dy * y)`` is the chain rule over the steps
actually run, with those Jacobians evaluated by mpmath at 30 digits. Nothing here uses the hand-derived
adjoints of :mod:`kinn_ref`. Meant for small cases (``N <= 3``, ``K <= 2``, ``T <= 4``).
"""
import numpy as np

from .discrete_map import SymArithmetic, input_currents, readout, softplus, step, exact_circuit

DPS = 30


def _symbols(prefix, shape):
    import sympy
    n = int(np.prod(shape))
    return np.array(sympy.symbols(f"{prefix}_0:{n}") if n else [], dtype=object).reshape(shape)


def _effective(spec, arith, raw):
    """Parameters of the ``raw`` mode equivalent to ``raw`` under ``spec.param`` (eqs. 8-11)."""
    if spec.param == "raw":
        return dict(raw)
    eff = dict(raw)
    eff["C_raw"] = arith.number(spec.c_min) + softplus(arith, raw["C_raw"])
    eff["g_raw"] = softplus(arith, raw["g_raw"])
    if spec.coupling == "kirchhoff":
        R = raw["G_raw"]
        eff["G_raw"] = softplus(arith, (R + np.swapaxes(R, 1, 2)) * arith.fraction(1, 2))
    elif spec.coupling == "grid":
        eff["G_raw"] = softplus(arith, raw["G_raw"])
    return eff


def _flat(groups):
    """The entries of a list of arrays, in order, as one list."""
    return [v for group in groups for v in np.asarray(group, dtype=object).reshape(-1)]


class _Jacobian:
    """The SymPy Jacobian of the entries of the arrays ``outs`` with respect to those of ``args``, compiled
    for mpmath; called with numeric arrays shaped like ``args``."""

    def __init__(self, outs, args):
        import sympy
        flat_args = _flat(args)
        self.fn = sympy.lambdify(flat_args, sympy.Matrix(_flat(outs)).jacobian(flat_args), "mpmath")

    def __call__(self, *values):
        import mpmath
        return mpmath.matrix(self.fn(*_flat(values)))


def _split(row, shapes):
    """Split a flat row into object arrays of the given shapes."""
    out, i = [], 0
    for shape in shapes:
        n = int(np.prod(shape))
        out.append(np.array(list(row[i:i + n]), dtype=object).reshape(shape))
        i += n
    return out


def _mp_array(a):
    """A float array as an object array of mpmath numbers (exact values)."""
    import mpmath
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = mpmath.mpf(float(a[idx]))
    return out


def _row(a):
    import mpmath
    return mpmath.matrix([list(np.asarray(a, dtype=object).reshape(-1))])


def symbolic_gradients(spec, params, x, V0, dy):
    """``dL/dq`` for ``L = sum(dy * y)`` and every argument ``q``, by SymPy differentiation of the discrete map.

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    x : ndarray
    V0 : ndarray, shape (B, K, N), or None
    dy : ndarray
        Cotangent, the shape of the layer's output.

    Returns
    -------
    dict of ndarray (float64)
        Keys of ``params``, ``"x"`` and, when ``V0`` is given, ``"V0"``.
    """
    import mpmath
    import sympy
    arith = SymArithmetic()
    names = list(params)
    raw = {k: _symbols(f"r{k}", np.shape(v)) for k, v in params.items()}
    eff = _effective(spec, arith, raw)
    eff_syms = {k: _symbols(f"e{k}", np.shape(v)) for k, v in params.items()}
    raw_spec = spec.replace(param="raw")
    circuit = exact_circuit(raw_spec, arith, eff_syms)
    B, K, N = x.shape[0], spec.order, spec.total_nodes
    Y, I = _symbols("Y", (B, K, N)), _symbols("I", (B, N))
    xs = _symbols("x", x.shape)
    currents = input_currents(spec, eff_syms, xs)                           # (B, T, N)
    T = currents.shape[1]
    p_groups = [eff_syms[k] for k in names]
    p_shapes = [np.shape(params[k]) for k in names]
    n_p = sum(int(np.prod(shape)) for shape in p_shapes)
    cotangent_shapes = [(B, K, N), (B, N), (n_p,)]

    d_eff = _Jacobian([eff[k] for k in names], [raw[k] for k in names])
    d_current = _Jacobian([currents], p_groups + [xs])
    next_state = step(raw_spec, arith, circuit, Y, I)
    d_step = _Jacobian([next_state], [Y, I] + p_groups)
    d_out = _Jacobian([readout(raw_spec, circuit, Y, I)], [Y, I] + p_groups)

    step_fn = sympy.lambdify(_flat([Y, I] + p_groups), _flat([next_state]), "mpmath")
    eff_fn = sympy.lambdify(_flat([raw[k] for k in names]), _flat([eff[k] for k in names]), "mpmath")
    cur_fn = sympy.lambdify(_flat(p_groups + [xs]), _flat([currents]), "mpmath")

    with mpmath.workdps(DPS):
        num = _mp_array
        raw_v = [num(params[k]) for k in names]
        eff_v = _split(eff_fn(*_flat(raw_v)), p_shapes)
        x_v = num(x)
        cur_v = np.array(cur_fn(*_flat(eff_v + [x_v])), dtype=object).reshape(B, T, N)
        states = [num(np.zeros((B, K, N))) if V0 is None else num(V0)]
        for n in range(T):
            nxt = step_fn(*_flat([states[-1], cur_v[:, n]] + eff_v))
            states.append(np.array(nxt, dtype=object).reshape(B, K, N))
        w = num(dy)
        lam = mpmath.matrix(1, B * K * N)                     # cotangent of the state
        g_eff = mpmath.matrix(1, n_p)
        g_cur = np.full((B, T, N), mpmath.mpf(0), dtype=object)
        for n in reversed(range(T)):
            args = [states[n + 1], cur_v[:, n]] + eff_v
            w_n = w[:, n] if spec.return_sequences else (w if n == T - 1 else None)
            if w_n is not None:
                dY, dI, dp = _split(_row(w_n) * d_out(*args), cotangent_shapes)
                lam += _row(dY)
                g_cur[:, n] += dI
                g_eff += _row(dp)
            dY, dI, dp = _split(lam * d_step(*([states[n], cur_v[:, n]] + eff_v)), cotangent_shapes)
            lam = _row(dY)
            g_cur[:, n] += dI
            g_eff += _row(dp)
        dp, g_x = _split(_row(g_cur) * d_current(*(eff_v + [x_v])), [(n_p,), x.shape])
        g_eff += _row(dp)
        g_raw = _split(g_eff * d_eff(*raw_v), p_shapes)
        grads = {k: np.array(g, dtype=float).reshape(np.shape(params[k])) for k, g in zip(names, g_raw)}
        grads["x"] = np.array(g_x, dtype=float).reshape(x.shape)
        if V0 is not None:
            grads["V0"] = np.array(_split(lam, [(B, K, N)])[0], dtype=float)
    return grads
