"""Higher-order analysis of the cascade (docs/math.md, eqs. 1-2, 20, 23).

Without coupling, every node of a ``K``-cell cascade is a chain of first-order RC cells: in the Laplace
domain KCL gives ``(C_k s + g_k) V_k = u_k`` (plus initial charge and leak), so the transfer function from the
input current to the last cell is ``H(s) = prod_k beta_k / (C_k s + g_k)`` (``beta_1 = 1``): a ``K``-th-order
ODE ``p(d/dt) y = (prod beta) u`` with characteristic polynomial ``p(s) = prod (C_k s + g_k)``. Responses are
inverted exactly by partial fractions (distinct and repeated poles).

For any coupling, the exact time derivatives of the continuous system at a state (the ``derivatives``
readout, eq. 20) are the coefficients of the Laplace transform ``Y(s) = (s C - A)^-1 (C Y0 + b / s)``
expanded at ``s = oo``: ``Y(s) = sum_m Y^(m)(0) s^-(m+1)``.

Arguments that are numbers may be given as floats (they enter as the exact rationals they represent) or as
SymPy expressions/symbols.
"""
import numpy as np

import kinn_ref
from kinn_ref.spec import LayerSpec


def _sympy():
    import sympy
    return sympy


def _exact(v):
    sp = _sympy()
    if isinstance(v, (float, np.floating)):
        return sp.Rational(float(v))
    if isinstance(v, (int, np.integer)):
        return sp.Integer(int(v))
    return sp.sympify(v)


def _cells(C, g, beta):
    C, g, beta = [list(map(_exact, np.atleast_1d(np.asarray(a, dtype=object)))) for a in (C, g, beta)]
    if not (len(C) == len(g) == len(beta)) or not C:
        raise ValueError(f"C, g and beta must have one entry per cell (the same length >= 1), got lengths "
                         f"{len(C)}, {len(g)}, {len(beta)}")
    return C, g, beta


def laplace_cascade(C, g, beta, s, u, V0=None, leak=None):
    """Laplace transforms ``V_k(s)`` of one node of an uncoupled cascade, from KCL (eqs. 1-2).

    ``C_k (s V_k - V_k(0)) = -g_k V_k - leak_k / s + u_k`` with ``u_1 = u`` (the transform of the input
    current) and ``u_k = beta_k V_{k-1}``, solved cell by cell.

    Parameters
    ----------
    C, g, beta : sequence, length K
        Per-cell capacitance, leak conductance and gain (``beta[0]`` unused).
    s : sympy.Symbol
    u : sympy.Expr
        Transform of the input current of cell 1.
    V0, leak : sequence, length K, optional
        Initial potentials and constant leak currents (zero when omitted).

    Returns
    -------
    list of sympy.Expr
    """
    sp = _sympy()
    C, g, beta = _cells(C, g, beta)
    K = len(C)
    V0 = [sp.Integer(0)] * K if V0 is None else list(map(_exact, V0))
    leak = [sp.Integer(0)] * K if leak is None else list(map(_exact, leak))
    V = []
    for k in range(K):
        drive = u if k == 0 else beta[k] * V[k - 1]
        Vk = sp.Symbol(f"V{k + 1}")
        kcl = sp.Eq(C[k] * (s * Vk - V0[k]), -g[k] * Vk - leak[k] / s + drive)
        V.append(sp.together(sp.solve(kcl, Vk)[0]))
    return V


def transfer_function(C, g, beta):
    """``H(s) = V_K(s) / U(s)`` at rest without leak: ``prod beta_k / (C_k s + g_k)``, derived from KCL.

    Returns
    -------
    H : sympy.Expr
    s : sympy.Symbol
    """
    sp = _sympy()
    s, U = sp.Symbol("s"), sp.Symbol("U")
    H = sp.factor(laplace_cascade(C, g, beta, s, U)[-1] / U)
    return H, s


def characteristic_polynomial(C, g, beta):
    """Denominator ``p(s)`` of :func:`transfer_function` (``prod (C_k s + g_k)``), as a SymPy polynomial."""
    sp = _sympy()
    H, s = transfer_function(C, g, beta)
    return sp.Poly(sp.fraction(sp.together(H))[1], s)


def cascade_ode(C, g, beta):
    """The equivalent ``K``-th-order ODE of the last cell, ``p(d/dt) y(t) = gain * u(t)``.

    Returns
    -------
    ode : sympy.Eq
        In the functions ``y(t)`` and ``u(t)``.
    t : sympy.Symbol
    """
    sp = _sympy()
    H, s = transfer_function(C, g, beta)
    num, den = sp.fraction(sp.together(H))
    t = sp.Symbol("t", nonnegative=True)
    y, u = sp.Function("y")(t), sp.Function("u")(t)
    p = sp.Poly(den, s)
    lhs = sum(c * y.diff(t, j) if j else c * y for (j,), c in p.terms())
    return sp.Eq(lhs, sp.expand(num) * u), t


def inverse_laplace(F, s, t):
    """Inverse Laplace transform of a rational ``F(s)`` by partial fractions.

    A pole ``p`` of multiplicity ``m`` contributes ``sum_j c_j t^(j-1)/(j-1)! e^(p t)`` with
    ``c_j = [d^(m-j)/ds^(m-j) ((s-p)^m F(s))]_{s=p} / (m-j)!``.
    """
    sp = _sympy()
    num, den = sp.fraction(sp.together(F))
    den_poly = sp.Poly(den, s)
    if sp.Poly(num, s).degree() >= den_poly.degree():
        raise ValueError(f"F must be strictly proper in s, got {F}")
    poles = sp.roots(den_poly)
    if sum(poles.values()) != den_poly.degree():
        raise ValueError(f"could not find every pole of {F}")
    f = sp.Integer(0)
    for p, m in poles.items():
        core = sp.cancel(F * (s - p) ** m)
        for j in range(1, m + 1):
            c = sp.diff(core, s, m - j).subs(s, p) / sp.factorial(m - j)
            f += sp.simplify(c) * t ** (j - 1) / sp.factorial(j - 1) * sp.exp(p * t)
    return f


def step_response(C, g, beta, amplitude=1):
    """``y(t)`` of the last cell for a step of input current ``amplitude`` at rest (zero state, no leak).

    Returns
    -------
    y : sympy.Expr
    t : sympy.Symbol
    """
    H, s = transfer_function(C, g, beta)
    t = _sympy().Symbol("t", nonnegative=True)
    return inverse_laplace(H * _exact(amplitude) / s, s, t), t


def impulse_response(C, g, beta):
    """``h(t)``, the inverse transform of ``H(s)`` (the derivative of the unit step response)."""
    H, s = transfer_function(C, g, beta)
    t = _sympy().Symbol("t", nonnegative=True)
    return inverse_laplace(H, s, t), t


def cascade_response(C, g, beta, current, V0=None, leak=None):
    """Exact ``V_K(t)`` for a constant input ``current``, initial potentials ``V0`` and leak currents.

    Returns
    -------
    y : sympy.Expr
    t : sympy.Symbol
    """
    sp = _sympy()
    s = sp.Symbol("s")
    V = laplace_cascade(C, g, beta, s, _exact(current) / s, V0, leak)
    t = sp.Symbol("t", nonnegative=True)
    return inverse_laplace(V[-1], s, t), t


def exact_derivatives(C, A, b, Y0, order):
    """Exact time derivatives ``Y^(m)(0)``, m = 0..order, of ``diag(C) dY/dt = A Y + b`` from the expansion
    of its Laplace transform at ``s = oo``.

    With ``w = 1/s``, ``Y = w (C - w A)^-1 (C Y0 + w b) = w adj(C - w A) (C Y0 + w b) / det(C - w A)``: a
    ratio of polynomials in ``w`` (exact, over the rationals), expanded by power-series division; the
    coefficient of ``w^(m+1)`` is ``Y^(m)(0)``.

    Parameters
    ----------
    C : sequence, length n
        Capacitance of every state (stacked).
    A : (n, n) array-like
        Conductance matrix of the stacked system (couplings minus leak conductances, gains below the
        diagonal).
    b : sequence, length n
        Constant current (input and leak).
    Y0 : sequence, length n
        State at t = 0.
    order : int

    Returns
    -------
    list of sympy.Matrix
        ``order + 1`` column vectors of exact rationals.
    """
    sp = _sympy()
    from sympy.polys.matrices import DomainMatrix
    n = len(Y0)
    w = sp.Symbol("w")
    ring = sp.QQ[w]
    M = sp.Matrix(n, n, lambda i, j: (_exact(C[i]) if i == j else 0) - w * _exact(A[i][j]))
    r = sp.Matrix([_exact(C[i]) * _exact(Y0[i]) + w * _exact(b[i]) for i in range(n)])
    DM = DomainMatrix.from_Matrix(M).convert_to(ring)
    den = sp.Poly(ring.to_sympy(DM.det()), w)
    nums = (DM.adjugate() * DomainMatrix.from_Matrix(r).convert_to(ring)).to_Matrix()
    d = den.all_coeffs()[::-1]                               # lowest power first; d[0] = prod C != 0
    columns = []
    for entry in nums:
        a = sp.Poly(entry, w).all_coeffs()[::-1]
        c = []
        for k in range(order + 1):                           # (a / d) = sum c_k w^k
            acc = (a[k] if k < len(a) else 0) - sum(d[j] * c[k - j] for j in range(1, min(k, len(d) - 1) + 1))
            c.append(acc / d[0])
        columns.append(c)
    return [sp.Matrix([col[m] for col in columns]) for m in range(order + 1)]


def stacked_system(spec, params, V0, I):
    """``(C, A, b)`` of :func:`exact_derivatives` for one batch row of a layer (float64 circuit).

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    V0 : ndarray, shape (K, N)
        The state.
    I : ndarray, shape (N,)
        The input current held.
    """
    from kinn_ref.coupling import make_coupling
    from kinn_ref.parameterization import make_circuit
    circuit = make_circuit(spec, params)
    coupling = make_coupling(spec, circuit)
    K, N = spec.order, spec.total_nodes
    A = np.zeros((K * N, K * N))
    for k in range(K):
        A[k * N:(k + 1) * N, k * N:(k + 1) * N] = coupling.apply(k, np.eye(N)).T - np.diag(circuit.g[k])
        if k:
            A[k * N:(k + 1) * N, (k - 1) * N:k * N] = np.diag(circuit.beta[k])
    b = -circuit.leak.reshape(-1).copy()
    b[:N] += I
    return circuit.C.reshape(-1), A, b


def uncoupled_cascade_layer(C, g, beta, leak, current, integrator, dt, n_steps):
    """A one-node, uncoupled ``raw`` layer realising the cascade: ``(spec, params, x)`` with ``x`` the
    constant input current (``W = 1``, ``b = 0``), for running the numerical integrators."""
    K = len(C)
    spec = LayerSpec(1, 1, order=K, coupling="none", integrator=integrator, dt=dt, n_steps=n_steps,
                     readout="last", param="raw")
    params = {"W": np.ones((1, 1)), "b": np.zeros(1)}
    for name, values in (("C_raw", C), ("g_raw", g), ("leak", leak), ("beta", beta)):
        params[name] = np.asarray(values, np.float64).reshape(K, 1)
    return spec, params, np.full((1, 1), float(current))


def convergence_errors(integrator, C, g, beta, leak, current, t_end=1.0, steps=(8, 16, 32, 64),
                       backend="numpy"):
    """Errors of the numerical ``V_K(t_end)`` against :func:`cascade_response` (from rest) per step count.

    Returns
    -------
    dts : ndarray
    errors : ndarray
        ``|V_K - exact| / |exact|``.
    slope : float
        Least-squares slope of ``log(error)`` against ``log(dt)``: the measured order.
    """
    y, t = cascade_response(C, g, beta, current, leak=leak)
    exact = float(y.subs(t, _exact(t_end)).evalf(30))
    dts, errors = [], []
    for n in steps:
        spec, params, x = uncoupled_cascade_layer(C, g, beta, leak, current, integrator, t_end / n, n)
        out, _ = kinn_ref.forward(spec, params, x, backend=backend)
        dts.append(t_end / n)
        errors.append(abs(float(out[0, 0]) - exact) / abs(exact))
    dts, errors = np.array(dts), np.array(errors)
    return dts, errors, float(np.polyfit(np.log(dts), np.log(errors), 1)[0])
