"""The full KINN formulation in PyTorch, written from docs/math.md, with gradients from autograd.

It stands for an outside implementation of the whole layer: it imports nothing from kinn_ref and covers
every coupling (none, dense, kirchhoff, grid in 1-D and 2-D with each boundary), integrator (euler,
expeuler, implicit, rk4), readout (last, cells, derivatives), parameterization, static and sequence input,
return_sequences and an initial state. It computes in the case's dtype (float32 cases in float32). Every
coupling is formed as an explicit N x N matrix, which suits the small layers of the suite.

Check it (torch is in the bench extra):  kinn-ref golden check --impl docs/examples/torch_kinn.py:adapter
"""
import math

import torch


def softplus(z):
    """log(1 + exp(z)) (eq. 8); torch.nn.functional.softplus returns z itself above z = 20, 2e-9 off."""
    return torch.logaddexp(torch.zeros_like(z), z)


def phi1(a):
    """(1 - exp(-a)) / a, phi1(0) = 1 (eq. 14). Below |a| = 0.1 its Taylor series, whose derivative has
    no cancellation (the quotient's derivative loses digits as a -> 0)."""
    small = a.abs() < 0.1
    safe = torch.where(small, torch.ones_like(a), a)
    series = torch.full_like(a, 1 / math.factorial(15))
    for n in reversed(range(14)):                 # sum_n (-a)^n / (n + 1)!, n = 0..14, by Horner's scheme
        series = 1 / math.factorial(n + 1) - a * series
    return torch.where(small, series, -torch.expm1(-safe) / safe)


def grid_laplacian(shape, boundary, dtype):
    """The (P, P) unit-conductance mesh Laplacian L0 of eq. 7, from the neighbours of each point."""
    points = [(i,) for i in range(shape[0])] if len(shape) == 1 else \
        [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    index = {p: n for n, p in enumerate(points)}
    L = torch.zeros(len(points), len(points), dtype=dtype)
    for p in points:
        for axis in range(len(shape)):
            for step in (-1, 1):
                q = list(p)
                q[axis] += step
                if 0 <= q[axis] < shape[axis]:
                    L[index[p], index[tuple(q)]] += 1           # an edge to a neighbour
                    L[index[p], index[p]] -= 1
                elif boundary == "periodic":
                    q[axis] %= shape[axis]
                    L[index[p], index[tuple(q)]] += 1           # the edge that wraps around
                    L[index[p], index[p]] -= 1
                elif boundary == "dirichlet":
                    L[index[p], index[p]] -= 1                  # an edge to the grounded ghost point
    return L


def circuit(spec, p):
    """C, g, leak, beta per node (K, N) and the coupling matrices A (K, N, N), eqs. 4-11."""
    positive = spec["param"] == "positive"
    C = spec["c_min"] + softplus(p["C_raw"]) if positive else p["C_raw"]
    g = softplus(p["g_raw"]) if positive else p["g_raw"]
    leak, beta = p["leak"], p["beta"]
    K, H = C.shape
    if spec["coupling"] == "none":
        A = torch.zeros(K, H, H, dtype=C.dtype)
    elif spec["coupling"] == "dense":
        A = p["G_raw"]
    elif spec["coupling"] == "kirchhoff":
        R = (p["G_raw"] + p["G_raw"].transpose(1, 2)) / 2
        S = (softplus(R) if positive else R) * (1 - torch.eye(H, dtype=C.dtype))
        A = S - torch.diag_embed(S.sum(dim=2))
    else:                                                       # grid: node p*H + h
        s = softplus(p["G_raw"]) if positive else p["G_raw"]
        L0 = grid_laplacian(spec["grid_shape"], spec["boundary"], C.dtype)
        A = torch.stack([torch.kron(L0, torch.diag(s[k])) for k in range(K)])
        P = L0.shape[0]
        C, g, leak, beta = (q.repeat(1, P) for q in (C, g, leak, beta))
    return C, g, leak, beta, A


def rhs(cir, Y, I, affine=True):
    """F(Y, I) of eq. 1-2 for the stacked state Y (B, K, N); affine=False: the linear part J Y (eq. 21)."""
    C, g, leak, beta, A = cir
    F = []
    for k in range(Y.shape[1]):
        cur = Y[:, k] @ A[k].T - g[k] * Y[:, k]
        if affine:
            cur = cur - leak[k] + (I if k == 0 else 0)
        if k > 0:
            cur = cur + beta[k] * Y[:, k - 1]
        F.append(cur / C[k])
    return torch.stack(F, dim=1)


def step(spec, cir, Y, I):
    """One step n -> n+1 of the integrator (eqs. 12-16), input I = I^n."""
    dt, integrator = spec["dt"], spec["integrator"]
    C, g, leak, beta, A = cir
    if integrator == "euler":
        return Y + dt * rhs(cir, Y, I)
    if integrator == "rk4":
        k1 = rhs(cir, Y, I)
        k2 = rhs(cir, Y + dt / 2 * k1, I)
        k3 = rhs(cir, Y + dt / 2 * k2, I)
        k4 = rhs(cir, Y + dt * k3, I)
        return Y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    cells = []
    for k in range(Y.shape[1]):
        if integrator == "expeuler":                            # eqs. 13-14, drives at step n
            d = torch.diagonal(A[k])
            a = dt * (g[k] - d) / C[k]
            u = I if k == 0 else beta[k] * Y[:, k - 1]
            q = Y[:, k] @ (A[k] - torch.diag(d)).T - leak[k] + u
            cells.append(torch.exp(-a) * Y[:, k] + dt * phi1(a) / C[k] * q)
        else:                                                   # implicit, eq. 15: V M^T = rhs
            M = torch.diag(C[k] / dt + g[k]) - A[k]
            u = I if k == 0 else beta[k] * cells[k - 1]
            b = C[k] / dt * Y[:, k] - leak[k] + u
            cells.append(torch.linalg.solve(M, b.T).T)
    return torch.stack(cells, dim=1)


def readout(spec, cir, Y, I):
    """Eqs. 18-20: V_K, every cell, or V_K and its time derivatives of orders 1..K."""
    B, K, N = Y.shape
    if spec["readout"] == "last":
        return Y[:, K - 1]
    if spec["readout"] == "cells":
        return Y.reshape(B, K * N)
    Z = [rhs(cir, Y, I)]
    for _ in range(1, K):
        Z.append(rhs(cir, Z[-1], I, affine=False))
    return torch.cat([Y[:, K - 1]] + [z[:, K - 1] for z in Z], dim=1)


def forward(spec, params, x, V0=None):
    """The layer's output for raw ``params`` (dict of tensors), input ``x`` and initial state ``V0``."""
    cir = circuit(spec, params)
    N = cir[0].shape[1]
    grid = spec["coupling"] == "grid"
    sequence = x.dim() == (4 if grid else 3)
    T = x.shape[1] if sequence else spec["n_steps"]
    B = x.shape[0]
    Y = torch.zeros(B, spec["order"], N, dtype=x.dtype) if V0 is None else V0
    outputs = []
    for n in range(T):
        xn = x[:, n] if sequence else x
        I = (xn @ params["W"].T + params["b"]).reshape(B, N)   # eq. 3 (grid: per point, node p*H + h)
        Y = step(spec, cir, Y, I)
        if spec["return_sequences"] or n == T - 1:
            outputs.append(readout(spec, cir, Y, I))
    return torch.stack(outputs, dim=1) if spec["return_sequences"] else outputs[-1]


def adapter(spec, params, x, V0, dy):
    """The golden-suite adapter (docs/golden.md): output and autograd gradients of sum(dy * y)."""
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    leaves["x"] = torch.tensor(x, requires_grad=True)
    if V0 is not None:
        leaves["V0"] = torch.tensor(V0, requires_grad=True)
    y = forward(spec, leaves, leaves["x"], leaves.get("V0"))
    (y * torch.tensor(dy)).sum().backward()
    # a parameter the output does not depend on (beta of a one-cell layer) has no .grad: its gradient is 0
    return y.detach().numpy(), {k: (torch.zeros_like(t) if t.grad is None else t.grad).numpy()
                                for k, t in leaves.items()}
