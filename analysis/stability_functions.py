"""Stability functions of the integrators, derived in SymPy from Kirchhoff's current law (docs/math.md,
eqs. 1, 12-16, 24).

One node of a cell obeys KCL, ``C dV/dt = -G V + w_o V + i``: ``G > 0`` is the node's own conductance to
ground (``g - d``, the part the exponential Euler step integrates exactly), ``w_o V`` the current from the
other nodes (for an eigenmode of the coupling, a multiple of ``V``) and ``i`` the input current, constant
over a step. Each integrator's one-step map is *derived* from that equation by its defining rule (a forward
difference, a backward difference solved for the new potential, the classical Runge-Kutta stages, or the
exact solution of ``C dV/dt = -G V + q`` with ``q`` frozen at the start of the step); its stability function
is the map's amplification ``R = V^{n+1} / V^n`` at ``i = 0``, written in ``z = dt (w_o - G) / C`` (and, for
the exponential Euler step, in ``w = -dt G / C``, the exactly integrated part).

Derivations are cached: each runs once per process.
"""
import functools

from kinn_ref.integrators import INTEGRATORS as METHODS
from kinn_ref.spec import INTEGRATORS


def _sympy():
    import sympy
    return sympy


@functools.lru_cache(maxsize=None)
def symbols():
    """The SymPy symbols of the derivations, by name.

    ``C, G, dt`` (positive), ``w_o, i, V`` (real) of the KCL node; ``z, w`` of the stability functions;
    ``t, x, y`` of the boundary polynomials (``t`` a step size, ``x + i y`` an eigenvalue).
    """
    sp = _sympy()
    pos = dict(positive=True)
    return {"C": sp.Symbol("C", **pos), "G": sp.Symbol("G", **pos), "dt": sp.Symbol("dt", **pos),
            "w_o": sp.Symbol("w_o", real=True), "i": sp.Symbol("i", real=True), "V": sp.Symbol("V", real=True),
            "z": sp.Symbol("z"), "w": sp.Symbol("w"), "t": sp.Symbol("t", positive=True),
            "x": sp.Symbol("x", real=True), "y": sp.Symbol("y", real=True)}


def _check_integrator(name):
    if name not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)}, got {name!r}")


@functools.lru_cache(maxsize=None)
def one_step_map(name):
    """``V^{n+1}`` of one KCL node as a SymPy expression of ``V, dt, C, G, w_o, i`` (eqs. 12-16), derived
    from the integrator's defining rule (:meth:`kinn_ref.integrators.Method.defining_rule`).

    Parameters
    ----------
    name : str
        A registered integrator (:data:`kinn_ref.spec.INTEGRATORS`).

    Returns
    -------
    sympy.Expr
    """
    _check_integrator(name)
    s = symbols()
    C, G, w_o, i = s["C"], s["G"], s["w_o"], s["i"]

    def f(v):                                   # KCL: dV/dt = (-G V + w_o V + i) / C
        return (-G * v + w_o * v + i) / C

    return METHODS[name].defining_rule(_sympy(), s, f)


@functools.lru_cache(maxsize=None)
def stability_function(name):
    """``R`` of ``name``: the one-step amplification at zero input (eq. 24).

    A function of ``z = dt (w_o - G) / C`` for euler, implicit and rk4, and of ``(w, z)`` with
    ``w = -dt G / C`` for expeuler, whose step depends on how the conductance is split.

    Returns
    -------
    sympy.Expr
    """
    sp = _sympy()
    s = symbols()
    C, G, dt, w_o, z, w = s["C"], s["G"], s["dt"], s["w_o"], s["z"], s["w"]
    R = (one_step_map(name) / s["V"]).subs(s["i"], 0)
    # G = -w C / dt and w_o = (z - w) C / dt express the map in the dimensionless step sizes
    R = sp.simplify(R.subs({G: -w * C / dt, w_o: (z - w) * C / dt}, simultaneous=True))
    if METHODS[name].function_of_dtJ:
        assert not R.has(w), (name, R)          # the derivation must give a function of z alone
    return R


@functools.lru_cache(maxsize=None)
def uncoupled_stability_function(name):
    """``R(z)`` for a cell without coupling (``w_o = 0``, so ``w = z``): expeuler gives ``exp(z)``."""
    sp = _sympy()
    s = symbols()
    return sp.simplify(stability_function(name).subs(s["w"], s["z"]))


@functools.lru_cache(maxsize=None)
def real_stability_limit(name):
    """Left end ``z*`` of the stability interval ``[z*, 0]`` of an uncoupled cell on the negative real axis.

    The largest negative real root of ``R(z) = 1`` or ``R(z) = -1`` beyond which ``|R| > 1``; ``-oo`` when
    ``|R(z)| <= 1`` for every ``z < 0``. Exact (SymPy numbers, radicals for rk4).
    """
    sp = _sympy()
    z = symbols()["z"]
    R = uncoupled_stability_function(name)
    roots = set()
    for target in (1, -1):
        roots |= _negative_real_roots(sp.together(R - target), z)
    for root in sorted(roots, key=lambda r: -float(r)):          # nearest to 0 first
        beyond = abs(float(R.subs(z, root - sp.Rational(1, 10 ** 6)).evalf(30)))
        if beyond > 1:
            return root
    return -sp.oo


def _negative_real_roots(expr, z):
    """Exact negative real roots of ``expr = 0``: radicals for polynomial numerators, ``solveset`` otherwise."""
    sp = _sympy()
    num = sp.fraction(expr)[0]
    if num.is_polynomial(z):
        poly = sp.Poly(num, z)
        exact = poly.real_roots()
        radicals = sp.roots(poly, filter="R")
        if sum(radicals.values()) == len(exact):   # radicals found for every real root: prefer them
            exact = list(radicals)
        return {r for r in exact if r.is_negative}
    found = sp.solveset(num, z, sp.Interval.open(-sp.oo, 0))
    if not isinstance(found, sp.FiniteSet) and found is not sp.S.EmptySet:
        raise ValueError(f"could not isolate the real roots of {expr}: {found}")
    return set(found)


def uncoupled_dt_max(name, C, g):
    """Largest stable ``dt`` of one uncoupled node, ``-z* C / g`` (closed form; ``inf`` when unbounded).

    Parameters
    ----------
    name : {"euler", "expeuler", "implicit", "rk4"}
    C : float
        Capacitance, > 0.
    g : float
        Leak conductance; ``g = 0`` is marginally stable for every ``dt``, ``g < 0`` unstable for every ``dt``
        for small ``dt`` (returns 0).

    Returns
    -------
    float
    """
    z_star = real_stability_limit(name)
    if g < 0:   # a growing mode: unstable for small dt with every integrator (implicit: for dt < 2C/|g|)
        return 0.0
    if g == 0 or z_star == -_sympy().oo:
        return float("inf")
    return float(-z_star.evalf(30)) * C / g


@functools.lru_cache(maxsize=None)
def boundary_polynomial(name):
    """Coefficients of ``Q(t)`` with ``|R(t lam)|^2 - 1 = t Q(t) / |den(t lam)|^2``, for ``lam = x + i y``.

    A step ``t`` is stable for the eigenvalue ``lam`` when ``Q(t) <= 0``: the ray ``t lam`` leaves the
    stability region at the first positive root of ``Q`` where ``Q`` turns positive. Defined for the
    integrators whose amplification matrix is ``R(dt J)`` (euler, implicit, rk4).

    Returns
    -------
    list of sympy.Expr
        Coefficients in ``x, y``, lowest power of ``t`` first.
    """
    if not METHODS[name].function_of_dtJ:
        raise ValueError(f"the {name} step is not a function of dt*J (it splits the conductance); "
                         "use the amplification matrix instead")
    sp = _sympy()
    s = symbols()
    t, x, y, z = s["t"], s["x"], s["y"], s["z"]
    num, den = sp.fraction(sp.together(stability_function(name)))
    lam = x + sp.I * y

    def abs2(p):
        p = sp.expand(p.subs(z, t * lam))
        re, im = sp.expand(sp.re(p)), sp.expand(sp.im(p))
        return sp.expand(re ** 2 + im ** 2)

    Q = sp.cancel((abs2(num) - abs2(den)) / t)
    return [sp.factor(c) for c in reversed(sp.Poly(Q, t).all_coeffs())]
