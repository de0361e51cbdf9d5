"""One-step methods on the stacked system (docs/math.md, section 4, eqs. 12-16 and 36; adjoints eqs. 27-31 and
37), each beside its adjoint.

An integrator is a stateless object with

- ``prepare(circuit, coupling, dt) -> ctx``: per-pass constants (decay factors, factorisations);
- ``step(ctx, Y, I) -> Y_next``;
- ``step_vjp(ctx, Y, I, Y_next, dY_next, acc) -> (dY, dI)``: adjoint of one step, circuit gradients
  accumulated into ``acc`` (quantities that depend only on the circuit are accumulated in ``ctx``'s own
  terms and chained once by ``finalize_vjp``);
- ``start_vjp(ctx)``: reset the per-pass accumulators before a backward pass;
- ``finalize_vjp(ctx, acc)``: chain the accumulated per-pass terms into ``acc``.

and it carries what the rest of the package knows about the method (:class:`Method`): its order, its
stability function ``R`` (eq. 24) as NumPy code and as the defining rule the SymPy analysis derives ``R``
from, whether it is A-stable, the re-entry step of a growing mode, its Butcher nodes and weights. The
analysis, the divergence check, the training guard and the command line ask :data:`INTEGRATORS` for these
instead of deciding by name.
"""
from types import SimpleNamespace

import numpy as np

from .dynamics import add_coupling_grad, drive, rhs, rhs_vjp


def phi1(a):
    """``phi1(a) = (1 - exp(-a)) / a`` with ``phi1(0) = 1``, via ``expm1`` (eq. 14)."""
    a = np.asarray(a)
    safe = np.where(a == 0, 1.0, a)
    return np.where(a == 0, 1.0, -np.expm1(-safe) / safe).astype(a.dtype, copy=False)


_PHI1_SERIES = [n * (-1) ** n / float(np.prod(np.arange(1, n + 2))) for n in range(1, 14)]


def phi1_grad(a):
    """``d phi1 / da = (exp(-a) - phi1(a)) / a``; a Taylor series for ``|a| < 0.1`` avoids cancellation."""
    a = np.asarray(a)
    small = np.abs(a) < 0.1
    safe = np.where(small, 1.0, a)
    direct = (np.exp(-safe) - phi1(safe)) / safe
    series = np.zeros_like(a)
    for n in reversed(range(1, 14)):  # sum_n n (-1)^n a^(n-1) / (n+1)!  (Horner)
        series = series * a + _PHI1_SERIES[n - 1]
    return np.where(small, series, direct).astype(a.dtype, copy=False)


class Method:
    """What every integrator states about itself (defaults: an explicit method whose map is ``R(dt J)``).

    Attributes
    ----------
    name : str
    order : int
        Global order of accuracy (measured in ``tests/test_convergence.py``).
    function_of_dtJ : bool
        Whether the step's amplification matrix is ``R(dt J)`` of the stacked Jacobian (eq. 22). False for
        exponential Euler, which splits each node's own conductance from the rest.
    a_stable : bool
        ``|R(z)| <= 1`` on the closed left half-plane: stable for every ``dt`` on a cell whose modes decay.
    tableau : tuple or None
        ``(nodes, weights)`` of an explicit Runge-Kutta method whose stage ``i`` is
        ``Y + dt nodes[i] k_{i-1}``.
    capacitance_scale : int or None
        For a method that solves one linear system per cell and step: the ``s`` of its matrix
        ``diag(s C_k/dt + g_k) - A_k`` (the compiled backends factorise it once per pass); None otherwise.
    """

    name, order = None, None
    function_of_dtJ = True
    a_stable = False
    tableau = None
    capacitance_scale = None

    def stability_function(self, z):
        """``R(z)`` as NumPy code (eq. 24); the SymPy derivation from :meth:`defining_rule` agrees
        (``tests/test_analysis_stability.py``)."""
        raise NotImplementedError(f"the {self.name} step is not a function of dt*J")

    def amplification_matrix(self, Z):
        """``R(Z)`` for the square matrix ``Z = dt J`` (eq. 22)."""
        raise NotImplementedError(f"the {self.name} step is not a function of dt*J")

    def defining_rule(self, sp, s, f):
        """``V^{n+1}`` of one KCL node as a SymPy expression, derived from the method's defining rule.

        ``sp`` is SymPy, ``s`` the symbols of :func:`analysis.stability_functions.symbols` and ``f(v)`` the
        node's KCL right-hand side ``(-G v + w_o v + i) / C``."""
        raise NotImplementedError

    def stable_from(self, lam):
        """For a growing mode ``lam`` (``Re lam > 0``): the step size from which the step damps it, or None
        when no step size does."""
        return None

    def unconditionally_stable(self, coupling):
        """Whether the step is stable for every ``dt`` on a passive circuit (``g >= 0``, ``C > 0``) with
        ``coupling``, whose continuous-time modes then decay (a ``dense`` coupling's need not)."""
        return self.a_stable and coupling != "dense"


class _NoPassTerms:
    """Mixin for integrators whose gradients need no per-pass accumulators."""

    def start_vjp(self, ctx):
        pass

    def finalize_vjp(self, ctx, acc):
        pass


class Euler(Method, _NoPassTerms):
    """Explicit Euler, ``Y <- Y + dt F(Y, I)`` (eq. 12). Order 1."""

    name, order = "euler", 1

    def stability_function(self, z):
        return 1 + z

    def amplification_matrix(self, Z):
        return np.eye(Z.shape[0]) + Z

    def defining_rule(self, sp, s, f):
        Vn = sp.Symbol("V_next")              # forward difference: C (V' - V)/dt = current at V
        C, dt, V = s["C"], s["dt"], s["V"]
        return sp.solve(sp.Eq(C * (Vn - V) / dt, C * f(V)), Vn)[0]

    def prepare(self, circuit, coupling, dt):
        return SimpleNamespace(circuit=circuit, coupling=coupling, dt=dt)

    def step(self, ctx, Y, I):
        return Y + ctx.dt * rhs(ctx.circuit, ctx.coupling, Y, I)

    def step_vjp(self, ctx, Y, I, Y_next, dY_next, acc):
        dY, dI = rhs_vjp(ctx.circuit, ctx.coupling, Y, I, ctx.dt * dY_next, acc)
        return dY + dY_next, dI


class ExpEuler(Method):
    """Exponential Euler, exact for each node's own conductance (eqs. 13-14). Order 1.

    ``V_k <- E_k V_k + p_k (V_k O_k^T - leak_k + u_k^n)`` with ``a_k = dt (g_k - d_k) / C_k``,
    ``E_k = exp(-a_k)`` and ``p_k = dt phi1(a_k) / C_k``.
    """

    name, order = "expeuler", 1
    function_of_dtJ = False

    def defining_rule(self, sp, s, f):
        # solve C dU/dt = -G U + q exactly, q = w_o V + i frozen at the start of the step
        C, G, dt, V = s["C"], s["G"], s["dt"], s["V"]
        tau, U = sp.Symbol("tau", positive=True), sp.Function("U")
        q = s["w_o"] * V + s["i"]
        solution = sp.dsolve(sp.Eq(C * U(tau).diff(tau), -G * U(tau) + q), U(tau), ics={U(0): V})
        return sp.simplify(solution.rhs.subs(tau, dt))

    def unconditionally_stable(self, coupling):
        """Passive uncoupled and kirchhoff cells: ``M >= 0`` with row sums <= 1 for every ``dt``."""
        return coupling in ("none", "kirchhoff")

    def prepare(self, circuit, coupling, dt):
        K = circuit.C.shape[0]
        d = np.stack([coupling.diag(k) for k in range(K)])
        a = dt * (circuit.g - d) / circuit.C
        return SimpleNamespace(circuit=circuit, coupling=coupling, dt=dt, a=a, E=np.exp(-a),
                               p=dt * phi1(a) / circuit.C)

    def start_vjp(self, ctx):
        ctx.dE, ctx.dp = np.zeros_like(ctx.a), np.zeros_like(ctx.a)

    def _current(self, ctx, Y, I, k):
        """``q_k = V_k O_k^T - leak_k + u_k``, the current the exponential step integrates."""
        return ctx.coupling.apply_off(k, Y[:, k]) - ctx.circuit.leak[k] + drive(ctx.circuit, Y, I, k)

    def step(self, ctx, Y, I):
        Y_next = np.empty_like(Y)
        for k in range(Y.shape[1]):
            Y_next[:, k] = ctx.E[k] * Y[:, k] + ctx.p[k] * self._current(ctx, Y, I, k)
        return Y_next

    def step_vjp(self, ctx, Y, I, Y_next, dY_next, acc):
        circuit, coupling = ctx.circuit, ctx.coupling
        dY = np.zeros_like(Y)
        dI = None
        for k in range(Y.shape[1]):
            dV1, V = dY_next[:, k], Y[:, k]
            r = ctx.p[k] * dV1
            ctx.dE[k] += (dV1 * V).sum(axis=0)
            ctx.dp[k] += (dV1 * self._current(ctx, Y, I, k)).sum(axis=0)
            dY[:, k] += ctx.E[k] * dV1 + coupling.apply_off_T(k, r)
            add_coupling_grad(acc, k, coupling.grad_off(k, r, V))
            acc.leak[k] -= r.sum(axis=0)
            if k == 0:
                dI = r
            else:
                acc.beta[k] += (r * Y[:, k - 1]).sum(axis=0)
                dY[:, k - 1] += circuit.beta[k] * r
        return dY, dI

    def finalize_vjp(self, ctx, acc):
        circuit, dt = ctx.circuit, ctx.dt
        da = -ctx.E * ctx.dE + ctx.dp * dt * phi1_grad(ctx.a) / circuit.C
        acc.C += -ctx.dp * ctx.p / circuit.C - da * ctx.a / circuit.C
        acc.g += da * dt / circuit.C
        dd = -da * dt / circuit.C
        for k in range(dd.shape[0]):
            add_coupling_grad(acc, k, ctx.coupling.diag_grad(k, dd[k]))


class Implicit(Method):
    """Backward Euler with block forward substitution over the cascade (eq. 15). Order 1.

    ``(C_k/dt + g_k) V_k' - V_k' A_k^T = (C_k/dt) V_k - leak_k + u_k'``, ``u_1' = I^n``,
    ``u_k' = beta_k V_{k-1}'``. Each cell's matrix is factorised once per pass, in :meth:`prepare`.
    """

    name, order = "implicit", 1
    a_stable = True
    capacitance_scale = 1

    def stability_function(self, z):
        return 1 / (1 - z)

    def amplification_matrix(self, Z):
        return np.linalg.inv(np.eye(Z.shape[0]) - Z)

    def defining_rule(self, sp, s, f):
        Vn = sp.Symbol("V_next")              # backward difference: C (V' - V)/dt = current at V'
        C, dt, V = s["C"], s["dt"], s["V"]
        return sp.simplify(sp.solve(sp.Eq(C * (Vn - V) / dt, C * f(Vn)), Vn)[0])

    def stable_from(self, lam):
        """``|1 - dt lam| >= 1`` from ``dt = 2 Re(lam) / |lam|^2`` on."""
        return 2 * lam.real / abs(lam) ** 2

    def prepare(self, circuit, coupling, dt):
        h = self.capacitance_scale * circuit.C / dt
        c = h + circuit.g
        solvers = [coupling.solver(k, c[k]) for k in range(c.shape[0])]
        return SimpleNamespace(circuit=circuit, coupling=coupling, dt=dt, h=h, solvers=solvers)

    def start_vjp(self, ctx):
        ctx.dh, ctx.dc = np.zeros_like(ctx.h), np.zeros_like(ctx.h)

    def step(self, ctx, Y, I):
        Y_next = np.empty_like(Y)
        for k in range(Y.shape[1]):
            rhs_k = ctx.h[k] * Y[:, k] - ctx.circuit.leak[k] + drive(ctx.circuit, Y_next, I, k)
            Y_next[:, k] = ctx.solvers[k].solve(rhs_k)
        return Y_next

    def step_vjp(self, ctx, Y, I, Y_next, dY_next, acc):
        return self._system_vjp(ctx, Y, Y_next, dY_next, acc)

    def _system_vjp(self, ctx, Y, Y_next, dY_next, acc, lams=None):
        """Adjoint of the cell-by-cell solves (eq. 30): ``(dY, dI)``; each cell's ``lambda_k`` into ``lams``
        when given."""
        circuit = ctx.circuit
        dY1 = dY_next.copy()
        dY = np.empty_like(Y)
        dI = None
        for k in reversed(range(Y.shape[1])):
            lam = ctx.solvers[k].solve_T(dY1[:, k])
            if lams is not None:
                lams[:, k] = lam
            dY[:, k] = ctx.h[k] * lam
            ctx.dh[k] += (lam * Y[:, k]).sum(axis=0)
            ctx.dc[k] -= (lam * Y_next[:, k]).sum(axis=0)
            add_coupling_grad(acc, k, ctx.coupling.grad(k, lam, Y_next[:, k]))
            acc.leak[k] -= lam.sum(axis=0)
            if k == 0:
                dI = lam
            else:
                acc.beta[k] += (lam * Y_next[:, k - 1]).sum(axis=0)
                dY1[:, k - 1] += circuit.beta[k] * lam
        return dY, dI

    def finalize_vjp(self, ctx, acc):
        acc.C += self.capacitance_scale * (ctx.dh + ctx.dc) / ctx.dt
        acc.g += ctx.dc


class RK4(Method, _NoPassTerms):
    """Classical Runge-Kutta 4 with the input held at ``I^n`` over the step (eq. 16). Order 4."""

    name, order = "rk4", 4
    nodes = (0.0, 0.5, 0.5, 1.0)
    weights = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    tableau = (nodes, weights)

    def stability_function(self, z):
        return 1 + z * (1 + z * (1 / 2 + z * (1 / 6 + z / 24)))

    def amplification_matrix(self, Z):
        eye = np.eye(Z.shape[0])
        out, term = eye.copy(), eye.copy()
        for j in range(1, 5):
            term = term @ Z / j
            out = out + term
        return out

    def defining_rule(self, sp, s, f):
        """The stages of :attr:`tableau`, in exact fractions."""
        dt, V = s["dt"], s["V"]
        nodes = [sp.nsimplify(c) for c in self.nodes]
        weights = [sp.nsimplify(w) for w in self.weights]
        slope, total = None, 0
        for c, w in zip(nodes, weights):
            slope = f(V if slope is None else V + dt * c * slope)
            total += w * slope
        return sp.expand(V + dt * total)

    def prepare(self, circuit, coupling, dt):
        return SimpleNamespace(circuit=circuit, coupling=coupling, dt=dt)

    def _stages(self, ctx, Y, I):
        """Stage states ``Y_i = Y + dt c_i k_{i-1}`` and slopes ``k_i = F(Y_i)``."""
        states, slopes = [], []
        k_prev = None
        for c in self.nodes:
            Yi = Y if k_prev is None else Y + (ctx.dt * c) * k_prev
            k_prev = rhs(ctx.circuit, ctx.coupling, Yi, I)
            states.append(Yi)
            slopes.append(k_prev)
        return states, slopes

    def step(self, ctx, Y, I):
        _, slopes = self._stages(ctx, Y, I)
        return Y + ctx.dt * sum(w * s for w, s in zip(self.weights, slopes))

    def step_vjp(self, ctx, Y, I, Y_next, dY_next, acc):
        states, _ = self._stages(ctx, Y, I)
        dY = dY_next.copy()
        dI = np.zeros_like(I)
        d_slope = ctx.dt * self.weights[-1] * dY_next
        for i in reversed(range(4)):
            d_state, dIi = rhs_vjp(ctx.circuit, ctx.coupling, states[i], I, d_slope, acc)
            dY += d_state
            dI += dIi
            if i > 0:
                d_slope = ctx.dt * self.weights[i - 1] * dY_next + (ctx.dt * self.nodes[i]) * d_state
        return dY, dI


class Trapezoidal(Implicit):
    """Trapezoidal rule (Crank-Nicolson) with the input held at ``I^n`` over the step (eq. 36). Order 2.

    On the stacked linear system ``Y' = J Y + c(I^n)``: ``(I - dt/2 J) Y^{n+1} = (I + dt/2 J) Y^n + dt c(I^n)``,
    solved cell by cell by block forward substitution, cell ``k`` taking ``beta_k V_{k-1}`` at both ends of
    the step. Multiplied by ``2 C_k / dt``, cell ``k``'s system is that of :class:`Implicit` with ``2 C_k/dt``
    in place of ``C_k/dt``:

        ``(2 C_k/dt + g_k) V_k' - V_k' A_k^T = (2 C_k/dt) V_k + q_k(Y, I^n) - leak_k + u_k'``

    with ``q_k = C_k F_k(Y, I^n)`` the cell's current at the start of the step (eq. 1) and ``u_k'`` its drive
    at the end (``I^n`` for the first cell). Each cell's matrix is factorised once per pass (``prepare``,
    ``start_vjp`` and ``finalize_vjp`` of :class:`Implicit`, with ``h = 2 C / dt``).
    """

    name, order = "trapezoidal", 2
    capacitance_scale = 2

    def stability_function(self, z):
        return (1 + z / 2) / (1 - z / 2)

    def amplification_matrix(self, Z):
        eye = np.eye(Z.shape[0])
        return np.linalg.solve(eye - Z / 2, eye + Z / 2)

    def defining_rule(self, sp, s, f):
        Vn = sp.Symbol("V_next")              # the mean of both ends: C (V' - V)/dt = C (f(V) + f(V'))/2
        C, dt, V = s["C"], s["dt"], s["V"]
        return sp.simplify(sp.solve(sp.Eq(C * (Vn - V) / dt, C * (f(V) + f(Vn)) / 2), Vn)[0])

    def stable_from(self, lam):
        return None                           # |R(z)| > 1 for every Re z > 0

    def step(self, ctx, Y, I):
        circuit = ctx.circuit
        F = rhs(circuit, ctx.coupling, Y, I)
        Y_next = np.empty_like(Y)
        for k in range(Y.shape[1]):
            rhs_k = ctx.h[k] * Y[:, k] + circuit.C[k] * F[:, k] - circuit.leak[k] + drive(circuit, Y_next, I, k)
            Y_next[:, k] = ctx.solvers[k].solve(rhs_k)
        return Y_next

    def step_vjp(self, ctx, Y, I, Y_next, dY_next, acc):
        """The solves' adjoint of :class:`Implicit` (``lambda_k``, eq. 30), then the start-of-step current
        ``C_k F_k`` through :func:`rhs_vjp` with the cotangent ``C_k lambda_k`` (eq. 37)."""
        circuit = ctx.circuit
        lams = np.empty_like(Y)
        dY, dI = self._system_vjp(ctx, Y, Y_next, dY_next, acc, lams)
        acc.C += (lams * rhs(circuit, ctx.coupling, Y, I)).sum(axis=0)
        dF = circuit.C * lams
        dY_start, dI_start = rhs_vjp(circuit, ctx.coupling, Y, I, dF, acc)
        return dY + dY_start, dI + dI_start


INTEGRATORS = {cls.name: cls() for cls in (Euler, ExpEuler, Implicit, RK4, Trapezoidal)}
