"""The discrete map of a KINN layer, written from the formulation alone (docs/math.md, eqs. 1-20).

This is an independent second implementation of what a layer computes, over an exact or high-precision
arithmetic: :class:`MpArithmetic` (mpmath numbers, real or complex; used for the golden suite),
:class:`SymArithmetic` (SymPy expressions; used for derivations and symbolic gradients) or
:class:`FloatArithmetic` (float64 complex numbers; used to estimate a case's condition). It shares no code
with :mod:`kinn_ref`'s NumPy reference: the coupling of every cell is formed as an explicit ``(N, N)``
matrix (the grid Laplacian is built from its neighbour lists), and each step is the textbook formula.

Arrays are NumPy ``object`` arrays of numbers of the arithmetic; states have shape ``(B, K, N)``.
"""
import cmath
import itertools
from dataclasses import dataclass

import numpy as np


class MpArithmetic:
    """mpmath numbers at the working precision of the caller (``mpmath.mp.dps``); complex values allowed."""

    def __init__(self):
        import mpmath
        self.mp = mpmath.mp

    def number(self, v):
        """The exact value of a binary floating-point number (or a complex one)."""
        if isinstance(v, complex):
            return self.mp.mpc(v.real, v.imag)
        return self.mp.mpf(float(v)) if isinstance(v, (float, np.floating, int, np.integer)) else v

    def fraction(self, p, q):
        return self.mp.mpf(p) / q

    def exp(self, a):
        return _map(self.mp.exp, a)

    def log(self, a):
        return _map(self.mp.log, a)

    def phi1(self, a):
        """``(1 - exp(-a))/a``; its Taylor series where ``|a|`` is small, so no digits are lost."""
        def one(v):
            if abs(v) < self.mp.mpf(10) ** (-8):
                return self.mp.fsum((-v) ** n / self.mp.factorial(n + 1) for n in range(12))
            return -self.mp.expm1(-v) / v
        return _map(one, a)

    def solve(self, M, r):
        return gauss_solve(M, r)


class FloatArithmetic:
    """Python complex numbers (float64 parts): fast, for the perturbation estimates of a case's condition
    (:mod:`analysis.golden_tolerance`), never for expected values."""

    def number(self, v):
        return complex(v)

    def fraction(self, p, q):
        return p / q

    def exp(self, a):
        return _map(cmath.exp, a)

    def log(self, a):
        return _map(cmath.log, a)

    def phi1(self, a):
        """``(1 - exp(-a))/a``; four terms of its Taylor series where ``|a| < 1e-4`` (truncation below 1e-18)."""
        def one(v):
            if abs(v) < 1e-4:
                return 1 - v / 2 + v * v / 6 - v * v * v / 24
            return (1 - cmath.exp(-v)) / v
        return _map(one, a)

    def solve(self, M, r):
        return gauss_solve(M, r)


def gauss_solve(M, r):
    """Solve ``M v = r`` by Gaussian elimination with partial pivoting (numbers of any arithmetic).

    Partial pivoting chooses rows by magnitude, a piecewise-constant choice: the solution stays an analytic
    function of the entries, which the complex-step derivatives of :mod:`analysis.golden_generate` need.
    """
    n = len(r)
    A = [list(M[i]) + [r[i]] for i in range(n)]
    for c in range(n):
        p = max(range(c, n), key=lambda i: abs(A[i][c]))
        A[c], A[p] = A[p], A[c]
        for i in range(c + 1, n):
            f = A[i][c] / A[c][c]
            A[i] = [a - f * b for a, b in zip(A[i], A[c])]
    v = [None] * n
    for i in reversed(range(n)):
        v[i] = (A[i][n] - sum(A[i][j] * v[j] for j in range(i + 1, n))) / A[i][i]
    return np.array(v, dtype=object)


class SymArithmetic:
    """SymPy expressions; binary floats enter as the exact rationals they represent."""

    def __init__(self):
        import sympy
        self.sp = sympy

    def number(self, v):
        if isinstance(v, (float, np.floating, int, np.integer)):
            return self.sp.Rational(float(v)) if isinstance(v, (float, np.floating)) else self.sp.Integer(int(v))
        return v

    def fraction(self, p, q):
        return self.sp.Rational(p, q)

    def exp(self, a):
        return _map(self.sp.exp, a)

    def log(self, a):
        return _map(self.sp.log, a)

    def phi1(self, a):
        return _map(lambda v: self.sp.Integer(1) if v == 0 else (1 - self.sp.exp(-v)) / v, a)

    def solve(self, M, r):
        Ms = self.sp.Matrix(M.tolist())
        return np.array(list(Ms.LUsolve(self.sp.Matrix(list(r)))), dtype=object)


def _map(fn, a):
    if isinstance(a, np.ndarray):
        return np.frompyfunc(fn, 1, 1)(a).astype(object) if a.ndim else np.array(fn(a.item()), dtype=object)
    return fn(a)


def to_objects(arith, a):
    """A float (or complex) array as an object array of exact numbers of ``arith``."""
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        v = a[idx]
        out[idx] = arith.number(complex(v) if np.iscomplexobj(a) else float(v))
    return out


def grid_laplacian(shape, boundary):
    """Unit-conductance mesh Laplacian ``L0`` of a 1-D or 2-D grid, ``(P, P)`` integers (eq. 7).

    Built from each point's neighbour list: along every axis a point has a neighbour on either side; past
    the edge, ``periodic`` wraps around, ``neumann`` has no edge and ``dirichlet`` has an edge to a grounded
    ghost node (which contributes to the diagonal only). Points are numbered in row-major order.
    """
    P = int(np.prod(shape))
    L = np.zeros((P, P), dtype=np.int64)
    for point in itertools.product(*(range(n) for n in shape)):
        i = np.ravel_multi_index(point, shape)
        for axis, n in enumerate(shape):
            for step in (-1, 1):
                q = list(point)
                q[axis] += step
                if 0 <= q[axis] < n or boundary == "periodic":
                    q[axis] %= n
                    L[i, np.ravel_multi_index(tuple(q), shape)] += 1
                    L[i, i] -= 1
                elif boundary == "dirichlet":
                    L[i, i] -= 1
    return L


@dataclass
class ExactCircuit:
    """Per-node circuit quantities (``(K, N)`` object arrays) and full coupling matrices ``A`` (``(K, N, N)``)."""

    C: np.ndarray
    g: np.ndarray
    leak: np.ndarray
    beta: np.ndarray
    A: np.ndarray


def softplus(arith, z):
    """``log(1 + exp(z))`` (eq. 8)."""
    return arith.log(1 + arith.exp(z))


def exact_circuit(spec, arith, params):
    """Circuit of ``spec`` from raw parameters given as object arrays (eqs. 4-11).

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    arith : MpArithmetic or SymArithmetic
    params : dict of object ndarray
        Keys and shapes of ``spec.param_shapes()``.

    Returns
    -------
    ExactCircuit
    """
    K, H = spec.order, spec.n_nodes
    positive = spec.param == "positive"
    C = arith.number(spec.c_min) + softplus(arith, params["C_raw"]) if positive else params["C_raw"]
    g = softplus(arith, params["g_raw"]) if positive else params["g_raw"]
    zero = arith.number(0)
    N = spec.total_nodes
    A = np.full((K, N, N), zero, dtype=object)
    if spec.coupling == "dense":
        A = params["G_raw"].copy()
    elif spec.coupling == "kirchhoff":
        for k in range(K):
            R = params["G_raw"][k]
            sym = (R + R.T) * arith.fraction(1, 2)
            S = softplus(arith, sym) if positive else sym
            for i in range(H):
                S[i, i] = zero
            A[k] = S - np.diag(S.sum(axis=1))
    elif spec.coupling == "grid":
        L0 = grid_laplacian(spec.grid_shape, spec.boundary)
        s = softplus(arith, params["G_raw"]) if positive else params["G_raw"]
        P = spec.n_points
        for k, h in itertools.product(range(K), range(H)):
            for p, q in itertools.product(range(P), range(P)):
                if L0[p, q]:
                    A[k, p * H + h, q * H + h] = arith.number(int(L0[p, q])) * s[k, h]
    per_node = (lambda a: np.tile(a, (1, spec.n_points))) if spec.coupling == "grid" else (lambda a: a)
    return ExactCircuit(C=per_node(C), g=per_node(g), leak=per_node(params["leak"]),
                        beta=per_node(params["beta"]), A=A)


def input_currents(spec, params, x):
    """``I^n = x^n W^T + b`` per node, shape ``(B, T, N)`` (eq. 3); a static ``x`` is held for ``n_steps``."""
    static_ndim = 3 if spec.coupling == "grid" else 2
    sequence = x.ndim == static_ndim + 1
    xs = x if sequence else np.stack([x] * spec.n_steps, axis=1)
    I = xs @ params["W"].T + params["b"]                      # (B, T, [P,] H)
    return I.reshape(I.shape[0], I.shape[1], spec.total_nodes)


def kcl_rhs(circuit, Y, I, affine=True):
    """``F(Y, I)`` (eqs. 1-2); without the leak and input terms when ``affine`` is False (the linear part J Y)."""
    F = np.empty_like(Y)
    for k in range(Y.shape[1]):
        V = Y[:, k]
        current = V @ circuit.A[k].T - circuit.g[k] * V
        if affine:
            current = current - circuit.leak[k] + (I if k == 0 else 0)
        if k > 0:
            current = current + circuit.beta[k] * Y[:, k - 1]
        F[:, k] = current / circuit.C[k]
    return F


def _drive(circuit, Y, I, k):
    return I if k == 0 else circuit.beta[k] * Y[:, k - 1]


def step(spec, arith, circuit, Y, I, dt=None):
    """One step ``Y^n -> Y^{n+1}`` of ``spec.integrator`` (eqs. 12-16, 36).

    Parameters
    ----------
    Y : object ndarray, shape (B, K, N)
    I : object ndarray, shape (B, N)
        Input current of the step (``I^n``).
    dt : number of the arithmetic, optional
        Step size (e.g. a SymPy symbol); ``spec.dt`` when omitted.
    """
    dt = arith.number(spec.dt) if dt is None else dt
    K = Y.shape[1]
    if spec.integrator == "euler":                                                   # eq. 12
        return Y + dt * kcl_rhs(circuit, Y, I)
    if spec.integrator == "rk4":                                                     # eq. 16
        half = dt * arith.fraction(1, 2)
        k1 = kcl_rhs(circuit, Y, I)
        k2 = kcl_rhs(circuit, Y + half * k1, I)
        k3 = kcl_rhs(circuit, Y + half * k2, I)
        k4 = kcl_rhs(circuit, Y + dt * k3, I)
        return Y + dt * arith.fraction(1, 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    Y_next = np.empty_like(Y)
    for k in range(K):
        A, C, g, leak = circuit.A[k], circuit.C[k], circuit.g[k], circuit.leak[k]
        if spec.integrator == "expeuler":                                            # eqs. 13-14
            d = np.diagonal(A).copy()
            O = A - np.diag(d)
            a = dt * (g - d) / C
            q = Y[:, k] @ O.T - leak + _drive(circuit, Y, I, k)
            Y_next[:, k] = arith.exp(-a) * Y[:, k] + dt * arith.phi1(a) / C * q
        elif spec.integrator == "implicit":                                          # eq. 15
            M = np.diag(C / dt + g) - A
            rhs = C / dt * Y[:, k] - leak + _drive(circuit, Y_next, I, k)
            for b in range(Y.shape[0]):
                Y_next[b, k] = arith.solve(M, rhs[b])
        elif spec.integrator == "trapezoidal":                                       # eq. 36
            # C (V' - V)/dt = (current at V + current at V')/2, the input I^n at both ends
            half = arith.fraction(1, 2)
            M = np.diag(C / dt + half * g) - half * A
            V = Y[:, k]
            rhs = (C / dt * V + half * (V @ A.T - g * V) - leak
                   + half * (_drive(circuit, Y, I, k) + _drive(circuit, Y_next, I, k)))
            for b in range(Y.shape[0]):
                Y_next[b, k] = arith.solve(M, rhs[b])
        else:
            raise ValueError(f"no discrete map for integrator {spec.integrator!r}")
    return Y_next


def readout(spec, circuit, Y, I):
    """Layer output from the state ``Y`` (B, K, N) with the input ``I`` (B, N) held (eqs. 18-20)."""
    B, K, N = Y.shape
    if spec.readout == "last":
        return Y[:, K - 1].copy()
    if spec.readout == "cells":
        return Y.reshape(B, K * N).copy()
    Z = [kcl_rhs(circuit, Y, I)]
    for _ in range(1, K):
        Z.append(kcl_rhs(circuit, Z[-1], I, affine=False))
    return np.concatenate([Y[:, K - 1]] + [z[:, K - 1] for z in Z], axis=1)


def evaluate(spec, arith, params, x, V0=None, after_step=None):
    """Output of the layer ``spec`` in the arithmetic ``arith`` (eqs. 1-20).

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    arith : MpArithmetic or SymArithmetic
    params : dict of object ndarray
        Raw parameters, keys and shapes of ``spec.param_shapes()``.
    x : object ndarray
        ``(B, D)`` static or ``(B, T, D)`` sequence input (grid: ``(B, P, D)`` or ``(B, T, P, D)``).
    V0 : object ndarray, shape (B, K, N), optional
        Initial state; zeros when omitted.
    after_step : callable, optional
        Applied to the state ``Y`` after every step (a perturbation, :mod:`analysis.golden_tolerance`).

    Returns
    -------
    object ndarray
        ``(B, width)``, or ``(B, T, width)`` with ``spec.return_sequences``.
    """
    circuit = exact_circuit(spec, arith, params)
    currents = input_currents(spec, params, x)
    B, T, N = currents.shape
    Y = np.full((B, spec.order, N), arith.number(0), dtype=object) if V0 is None else V0.copy()
    outputs = []
    for n in range(T):
        Y = step(spec, arith, circuit, Y, currents[:, n])
        if after_step is not None:
            Y = after_step(Y)
        if spec.return_sequences:
            outputs.append(readout(spec, circuit, Y, currents[:, n]))
    if spec.return_sequences:
        return np.stack(outputs, axis=1)
    return readout(spec, circuit, Y, currents[:, T - 1])
