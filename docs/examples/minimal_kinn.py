"""A small, self-contained KINN implementation checked against the kinn_ref golden suite.

It stands for an outside implementation (as one would write in PyTorch, JAX or C++): it imports nothing from
kinn_ref, implements a subset of the formulation of docs/math.md, and exposes the adapter documented in
docs/golden.md:

    adapter(spec, params, x, V0, dy) -> (y, grads)

Supported: couplings none, dense and kirchhoff; integrators euler, expeuler and rk4; readouts last and cells;
both parameterizations; static and sequence input; return_sequences. Other cases raise NotImplementedError
and are reported as unsupported. Gradients are complex-step derivatives (one complex forward pass per scalar),
which are exact to rounding for this analytic map.

Run it with:  kinn-ref golden check --impl docs/examples/minimal_kinn.py:adapter
"""
import math

import numpy as np

STEP = 1e-30   # complex step: the derivative is Im f(q + i STEP) / STEP, with no cancellation


def softplus(z):
    return np.log1p(np.exp(z))


def phi1(a):
    """(1 - exp(-a)) / a, with its Taylor series for |a| < 0.01 (complex arguments allowed).

    Below 0.01 the quotient would lose up to 16 + log10|a| digits to the cancellation in 1 - exp(-a); six
    terms of the series are exact there to 2e-16 (the next term is a^6/7!)."""
    small = np.abs(a) < 1e-2
    safe = np.where(small, 1.0, a)
    series = sum((-a) ** n / math.factorial(n + 1) for n in range(6))
    return np.where(small, series, (1 - np.exp(-safe)) / safe)


def circuit(spec, p):
    """Capacitance, conductance, leak, gain (K, N) and the coupling matrices A (K, N, N)."""
    positive = spec["param"] == "positive"
    C = spec["c_min"] + softplus(p["C_raw"]) if positive else p["C_raw"]
    g = softplus(p["g_raw"]) if positive else p["g_raw"]
    K, N = C.shape
    if spec["coupling"] == "none":
        A = np.zeros((K, N, N))
    elif spec["coupling"] == "dense":
        A = p["G_raw"]
    else:                                           # kirchhoff: S symmetric, zero diagonal; A = S - diag(S 1)
        R = (p["G_raw"] + np.swapaxes(p["G_raw"], 1, 2)) / 2
        S = (softplus(R) if positive else R) * (1 - np.eye(N))
        A = S - np.stack([np.diag(s.sum(axis=1)) for s in S])
    return C, g, p["leak"], p["beta"], A


def rhs(Y, I, C, g, leak, beta, A):
    """KCL right-hand side F(Y, I) for the stacked state Y (B, K, N)."""
    F = np.empty_like(Y)
    for k in range(Y.shape[1]):
        u = I if k == 0 else beta[k] * Y[:, k - 1]
        F[:, k] = (Y[:, k] @ A[k].T - g[k] * Y[:, k] - leak[k] + u) / C[k]
    return F


def step(spec, Y, I, C, g, leak, beta, A):
    dt = spec["dt"]
    if spec["integrator"] == "euler":
        return Y + dt * rhs(Y, I, C, g, leak, beta, A)
    if spec["integrator"] == "rk4":
        k1 = rhs(Y, I, C, g, leak, beta, A)
        k2 = rhs(Y + dt / 2 * k1, I, C, g, leak, beta, A)
        k3 = rhs(Y + dt / 2 * k2, I, C, g, leak, beta, A)
        k4 = rhs(Y + dt * k3, I, C, g, leak, beta, A)
        return Y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    out = np.empty_like(Y)                          # expeuler: own conductance exact, the rest held
    for k in range(Y.shape[1]):
        d = np.diagonal(A[k])
        a = dt * (g[k] - d) / C[k]
        u = I if k == 0 else beta[k] * Y[:, k - 1]
        q = Y[:, k] @ (A[k] - np.diag(d)).T - leak[k] + u
        out[:, k] = np.exp(-a) * Y[:, k] + dt * phi1(a) / C[k] * q
    return out


def forward(spec, params, x, V0):
    C, g, leak, beta, A = circuit(spec, params)
    K, N = C.shape
    sequence = x.ndim == 3
    T = x.shape[1] if sequence else spec["n_steps"]
    dtype = np.result_type(x, *params.values(), float)
    Y = np.zeros((x.shape[0], K, N), dtype) if V0 is None else V0.astype(dtype)
    outputs = []
    for n in range(T):
        I = (x[:, n] if sequence else x) @ params["W"].T + params["b"]
        Y = step(spec, Y, I, C, g, leak, beta, A)
        outputs.append(Y[:, -1] if spec["readout"] == "last" else Y.reshape(Y.shape[0], K * N))
    return np.stack(outputs, axis=1) if spec["return_sequences"] else outputs[-1]


def adapter(spec, params, x, V0, dy):
    """The golden-suite adapter: output and gradients of sum(dy * y) (see docs/golden.md)."""
    if spec["coupling"] not in ("none", "dense", "kirchhoff"):
        raise NotImplementedError(f"coupling {spec['coupling']!r}")
    if spec["integrator"] not in ("euler", "expeuler", "rk4"):
        raise NotImplementedError(f"integrator {spec['integrator']!r}")
    if spec["readout"] not in ("last", "cells"):
        raise NotImplementedError(f"readout {spec['readout']!r}")
    params = {k: v.astype(np.float64) for k, v in params.items()}
    x = x.astype(np.float64)
    V0 = None if V0 is None else V0.astype(np.float64)
    y = forward(spec, params, x, V0)
    args = dict(params, x=x, **({} if V0 is None else {"V0": V0}))
    grads = {}
    for name, value in args.items():
        grad = np.zeros(value.shape)
        for idx in np.ndindex(value.shape):
            trial = {k: v.astype(complex) for k, v in args.items()}
            trial[name][idx] += 1j * STEP
            p = {k: trial[k] for k in params}
            grad[idx] = np.sum(dy * forward(spec, p, trial["x"], trial.get("V0"))).imag / STEP
        grads[name] = grad
    return y, grads
