"""Exact analysis of tiny layers: the symbolic amplification matrix ``M(dt)`` of the discrete map and the
largest stable ``dt`` computed from it at high precision (docs/math.md, eqs. 22, 24).

``M(dt) = dY^{n+1}/dY^n`` is one step of :mod:`analysis.discrete_map` in SymPy arithmetic at zero input and
zero leak current, where the step is linear in the state: column ``j`` of ``M`` is the image of the ``j``-th
unit state. ``dt`` is a symbol and the circuit (capacitances, conductances, gains) is evaluated from the
exact parameterization at 40 significant digits, so that the entries of ``M`` are polynomials, rational
functions or exponentials of ``dt`` with numeric coefficients. These are the references that
:mod:`kinn_ref.linear_analysis` (``amplification_matrix``, ``spectral_radius``, ``max_stable_dt``) and
:mod:`analysis.stability` are checked against. Meant for cells of a few nodes: the cost grows quickly with
``K * N``.
"""
import numpy as np

from .discrete_map import SymArithmetic, exact_circuit, step, to_objects


def symbolic_amplification_matrix(spec, params):
    """``M(dt)`` of the layer as an exact SymPy matrix.

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
        Raw parameters; the leak current does not enter ``M`` and is ignored.

    Returns
    -------
    M : sympy.Matrix, shape (K*N, K*N)
        Row/column ``k*N + n`` is node ``n`` of cell ``k``.
    dt : sympy.Symbol
    """
    import sympy
    arith = SymArithmetic()
    exact = {k: to_objects(arith, v) for k, v in params.items()}
    exact["leak"] = np.full(exact["leak"].shape, sympy.Integer(0), dtype=object)
    circuit = exact_circuit(spec, arith, exact)
    digits = np.frompyfunc(lambda e: sympy.Float(sympy.sympify(e).evalf(40), 40), 1, 1)
    for name in ("C", "g", "beta", "A"):
        setattr(circuit, name, digits(getattr(circuit, name)).astype(object))
    K, N = spec.order, spec.total_nodes
    units = np.array([[sympy.Integer(int(i == j)) for j in range(K * N)] for i in range(K * N)],
                     dtype=object).reshape(K * N, K, N)
    dt = sympy.Symbol("dt", positive=True)
    zero_input = np.full((K * N, N), sympy.Integer(0), dtype=object)
    images = step(spec, arith, circuit, units, zero_input, dt=dt).reshape(K * N, K * N)   # row j: M e_j
    return sympy.Matrix(images.T.tolist()).applyfunc(sympy.expand), dt


def spectral_radius_function(M, dt, dps=30):
    """``rho(M(dt))`` evaluated with mpmath at ``dps`` digits; returns a callable of ``dt``."""
    import mpmath
    import sympy
    f = sympy.lambdify(dt, M, "mpmath")

    def rho(value):
        with mpmath.workdps(dps):
            A = mpmath.matrix(f(mpmath.mpf(value)).tolist())
            if mpmath.mnorm(A - A.T, 1) == 0:            # symmetric: the dedicated solver handles degeneracy
                eigenvalues = mpmath.eigsy(A, eigvals_only=True)
            else:
                eigenvalues = mpmath.eig(A, left=False, right=False)
            return max(abs(e) for e in eigenvalues)
    return rho


def symbolic_dt_max(M, dt, dt_lo=1e-3, dt_hi=1e3, margin=1e-20, dps=30):
    """Largest ``dt`` with ``rho(M(u)) <= 1`` for all ``0 < u <= dt``, from the exact ``M(dt)``.

    A ``1 x 1`` matrix gives a closed form (the smallest positive root of ``M(dt) = +-1`` beyond which
    ``|M| > 1``), as a SymPy number. Larger matrices are scanned on a logarithmic grid of ``dt`` and the
    first crossing of ``rho = 1`` is bisected at ``dps`` digits.

    Returns
    -------
    sympy.Expr or float
        ``oo`` / ``inf`` when stable on the whole range, 0 when unstable at ``dt_lo``.
    """
    import mpmath
    import sympy
    if M.shape == (1, 1):
        m = sympy.simplify(M[0, 0])
        roots = set()
        for target in (1, -1):
            found = sympy.solveset(m - target, dt, sympy.Interval.open(0, sympy.oo))
            if isinstance(found, sympy.FiniteSet):
                roots |= set(found)
        for r in sorted(roots, key=float):
            if abs(m.subs(dt, r * (1 + sympy.Rational(1, 10 ** 6))).evalf(dps)) > 1:
                return sympy.nsimplify(r) if r.is_rational else r
        return sympy.oo
    rho = spectral_radius_function(M, dt, dps)
    with mpmath.workdps(dps):
        def stable(v):
            return rho(v) <= 1 + mpmath.mpf(margin)

        grid = [mpmath.mpf(dt_lo) * mpmath.mpf(10) ** (mpmath.mpf(j) / 10) for j in
                range(int(10 * np.log10(dt_hi / dt_lo)) + 1)]
        if not stable(grid[0]):
            return 0.0
        lo = grid[0]
        for hi in grid[1:]:
            if not stable(hi):
                break
            lo = hi
        else:
            return float("inf")
        while hi - lo > mpmath.mpf(10) ** (-(dps - 5)) * lo:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if stable(mid) else (lo, mid)
        return float(lo)
