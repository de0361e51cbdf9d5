"""One-step methods on the stacked system (docs/math.md, section 4, eqs. 12-17; adjoints eqs. 27-31), each beside its adjoint.

An integrator is a stateless object with

- ``prepare(circuit, coupling, dt) -> ctx``: per-pass constants (decay factors, factorisations);
- ``step(ctx, Y, I) -> Y_next``;
- ``step_vjp(ctx, Y, I, Y_next, dY_next, acc) -> (dY, dI)``: adjoint of one step, circuit gradients
  accumulated into ``acc`` (quantities that depend only on the circuit are accumulated in ``ctx``'s own
  terms and chained once by ``finalize_vjp``);
- ``start_vjp(ctx)``: reset the per-pass accumulators before a backward pass;
- ``finalize_vjp(ctx, acc)``: chain the accumulated per-pass terms into ``acc``.
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


class _NoPassTerms:
    """Mixin for integrators whose gradients need no per-pass accumulators."""

    def start_vjp(self, ctx):
        pass

    def finalize_vjp(self, ctx, acc):
        pass


class Euler(_NoPassTerms):
    """Explicit Euler, ``Y <- Y + dt F(Y, I)`` (eq. 12). Order 1."""

    name, order = "euler", 1

    def prepare(self, circuit, coupling, dt):
        return SimpleNamespace(circuit=circuit, coupling=coupling, dt=dt)

    def step(self, ctx, Y, I):
        return Y + ctx.dt * rhs(ctx.circuit, ctx.coupling, Y, I)

    def step_vjp(self, ctx, Y, I, Y_next, dY_next, acc):
        dY, dI = rhs_vjp(ctx.circuit, ctx.coupling, Y, I, ctx.dt * dY_next, acc)
        return dY + dY_next, dI


class ExpEuler:
    """Exponential Euler, exact for each node's own conductance (eqs. 13-14). Order 1.

    ``V_k <- E_k V_k + p_k (V_k O_k^T - leak_k + u_k^n)`` with ``a_k = dt (g_k - d_k) / C_k``,
    ``E_k = exp(-a_k)`` and ``p_k = dt phi1(a_k) / C_k``.
    """

    name, order = "expeuler", 1

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


class Implicit:
    """Backward Euler with block forward substitution over the cascade (eq. 15). Order 1.

    ``(C_k/dt + g_k) V_k' - V_k' A_k^T = (C_k/dt) V_k - leak_k + u_k'``, ``u_1' = I^n``,
    ``u_k' = beta_k V_{k-1}'``. Each cell's matrix is factorised once per pass, in :meth:`prepare`.
    """

    name, order = "implicit", 1

    def prepare(self, circuit, coupling, dt):
        h = circuit.C / dt
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
        circuit = ctx.circuit
        dY1 = dY_next.copy()
        dY = np.empty_like(Y)
        dI = None
        for k in reversed(range(Y.shape[1])):
            lam = ctx.solvers[k].solve_T(dY1[:, k])
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
        acc.C += (ctx.dh + ctx.dc) / ctx.dt
        acc.g += ctx.dc


class RK4(_NoPassTerms):
    """Classical Runge-Kutta 4 with the input held at ``I^n`` over the step (eq. 16). Order 4."""

    name, order = "rk4", 4
    nodes = (0.0, 0.5, 0.5, 1.0)
    weights = (1 / 6, 1 / 3, 1 / 3, 1 / 6)

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


INTEGRATORS = {cls.name: cls() for cls in (Euler, ExpEuler, Implicit, RK4)}
