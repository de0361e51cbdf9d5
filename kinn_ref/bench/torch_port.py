"""A PyTorch port of one KINN layer, for benchmarks only: the same discrete computation as the NumPy
reference (docs/math.md eqs. 1-20), with gradients from autograd instead of the hand-derived adjoint.

PyTorch is not a dependency of kinn_ref (``pip install 'kinn-ref[bench]'``). The port is
device-agnostic: every tensor is created on the ``device`` given. It is checked against the reference in
``tests/test_numba_bench.py``, so a benchmark compares equal work.

Implicit steps factorise once per pass, as the reference does: dense/kirchhoff by
``torch.linalg.lu_factor``; the grid by the reference's scheme (eigenvectors of the first axis of a 2-D
grid, then per mode and channel a tridiagonal system along the last axis, cyclic when periodic) with the
elimination written as batched tensor operations over the grid points.
"""
import numpy as np

from ..coupling import unit_laplacian_sparse
from ..integrators import INTEGRATORS


def _torch():
    import torch
    return torch


def to_tensors(arrays, device="cpu", requires_grad=False):
    """NumPy arrays (a dict) as tensors on ``device`` (leaf tensors when ``requires_grad``)."""
    torch = _torch()
    return {k: torch.tensor(np.asarray(v), device=device, requires_grad=requires_grad)
            for k, v in arrays.items()}


def _softplus(z):
    torch = _torch()
    return torch.logaddexp(z, torch.zeros_like(z))


class TorchLayer:
    """One KINN layer of ``spec`` in PyTorch.

    Parameters
    ----------
    spec : LayerSpec
    device : str or torch.device
    """

    def __init__(self, spec, device="cpu"):
        self.spec, self.device = spec, device
        if spec.coupling == "grid":
            shape = tuple(spec.grid_shape)
            self._shape2 = shape if len(shape) == 2 else (1,) + shape
            self._counts = -unit_laplacian_sparse(shape, spec.boundary).diagonal()

    # circuit (eqs. 8-11) -------------------------------------------------------------------------
    def circuit(self, params):
        """``C, g, leak, beta`` per node (K, N) and the coupling parameter (None, (K,N,N) or (K,H))."""
        torch = _torch()
        spec = self.spec
        positive = spec.param == "positive"
        C = spec.c_min + _softplus(params["C_raw"]) if positive else params["C_raw"]
        g = _softplus(params["g_raw"]) if positive else params["g_raw"]
        A = None
        if spec.coupling == "dense":
            A = params["G_raw"]
        elif spec.coupling == "kirchhoff":
            R = params["G_raw"]
            sym = 0.5 * (R + R.transpose(1, 2))
            mask = 1 - torch.eye(spec.n_nodes, dtype=R.dtype, device=R.device)
            S = (_softplus(sym) if positive else sym) * mask
            A = S - torch.diag_embed(S.sum(dim=2))
        elif spec.coupling == "grid":
            A = _softplus(params["G_raw"]) if positive else params["G_raw"]
        P = spec.n_points
        expand = (lambda a: a.repeat(1, P)) if spec.coupling == "grid" else (lambda a: a)
        return expand(C), expand(g), expand(params["leak"]), expand(params["beta"]), A

    # coupling (eqs. 4-7) -------------------------------------------------------------------------
    def _laplacian(self, V):
        """Unit-conductance mesh currents per channel for ``V`` (B, N)."""
        torch = _torch()
        spec = self.spec
        U = V.reshape((V.shape[0],) + tuple(spec.grid_shape) + (spec.n_nodes,))
        out = torch.zeros_like(U)
        for ax in range(1, 1 + len(spec.grid_shape)):
            if spec.boundary == "periodic":
                out = out + torch.roll(U, 1, ax) + torch.roll(U, -1, ax) - 2 * U
                continue
            n = U.shape[ax]
            flux = U.narrow(ax, 1, n - 1) - U.narrow(ax, 0, n - 1)
            zero = torch.zeros_like(U.narrow(ax, 0, 1))
            out = out + torch.cat([flux, zero], ax) - torch.cat([zero, flux], ax)
            if spec.boundary == "dirichlet":
                edge = torch.cat([U.narrow(ax, 0, 1), torch.zeros_like(U.narrow(ax, 1, n - 2)),
                                  U.narrow(ax, n - 1, 1)], ax)
                out = out - edge
        return out.reshape(V.shape)

    def apply(self, A, k, V):
        """``V A_k^T`` for ``V`` (B, N)."""
        kind = self.spec.coupling
        if kind == "none":
            return None
        if kind == "grid":
            return self._laplacian(V) * A[k].repeat(self.spec.n_points)
        return V @ A[k].T

    def diag(self, A, k, like):
        torch = _torch()
        kind = self.spec.coupling
        if kind == "none":
            return torch.zeros_like(like)
        if kind == "grid":
            counts = torch.tensor(self._counts, dtype=like.dtype, device=like.device)
            return -(counts[:, None] * A[k][None, :]).reshape(-1)
        return torch.diagonal(A[k])

    # dynamics (eqs. 1-3) -------------------------------------------------------------------------
    def rhs(self, circ, Y, I, affine=True):
        C, g, leak, beta, A = circ
        out = []
        for k in range(len(Y)):
            cur = -g[k] * Y[k]
            coupled = self.apply(A, k, Y[k])
            if coupled is not None:
                cur = coupled + cur
            if affine:
                cur = cur - leak[k] + (I if k == 0 else 0)
            if k > 0:
                cur = cur + beta[k] * Y[k - 1]
            out.append(cur / C[k])
        return out

    # implicit solvers (eq. 15) -------------------------------------------------------------------
    def _implicit_solvers(self, circ):
        """``h = s C / dt`` and per-cell solvers of ``diag(h + g) - A`` (``s`` the integrator's
        ``capacitance_scale``: 1 implicit, 2 trapezoidal)."""
        torch = _torch()
        C, g, leak, beta, A = circ
        h = INTEGRATORS[self.spec.integrator].capacitance_scale * C / self.spec.dt
        c = h + g
        kind = self.spec.coupling
        if kind == "none":
            return h, [lambda r, ck=ck: r / ck for ck in c]
        if kind in ("dense", "kirchhoff"):
            solvers = []
            for k in range(len(c)):
                LU, piv = torch.linalg.lu_factor(torch.diag(c[k]) - A[k])
                solvers.append(lambda r, LU=LU, piv=piv: torch.linalg.lu_solve(LU, piv, r.T).T)
            return h, solvers
        H = self.spec.n_nodes
        return h, [self._grid_solver(c[k][:H], A[k]) for k in range(len(c))]

    def _grid_solver(self, c, s):
        """Solver of ``(diag(c_h) - s_h L0) v = r`` for ``r`` (B, N), factorised once."""
        torch = _torch()
        spec = self.spec
        P0, P1 = self._shape2
        H = spec.n_nodes
        dtype, device = c.dtype, c.device
        if P0 > 1:
            lam, Q0 = np.linalg.eigh(unit_laplacian_sparse((P0,), spec.boundary).toarray())
        else:
            lam, Q0 = np.zeros(1), np.ones((1, 1))
        lam = torch.tensor(lam, dtype=dtype, device=device)
        Q0 = torch.tensor(Q0, dtype=dtype, device=device)
        L1 = unit_laplacian_sparse((P1,), spec.boundary).tocsr()
        main, upper = L1.diagonal(), L1.diagonal(1)
        cyclic = spec.boundary == "periodic" and P1 >= 3
        base = c[None, :] - s[None, :] * lam[:, None]                       # (P0, H)
        diag = [base - s * float(main[i]) for i in range(P1)]
        off = [-s * float(upper[i]) for i in range(P1 - 1)]                 # symmetric: sub = super
        if cyclic:
            corner = -s * float(L1[0, P1 - 1])
            gamma = -diag[0]
            diag[0] = diag[0] - gamma
            diag[-1] = diag[-1] - corner * corner / gamma
        piv, mult = [diag[0]], []
        for i in range(1, P1):                                              # Thomas factorisation
            mult.append(off[i - 1] / piv[i - 1])
            piv.append(diag[i] - mult[-1] * off[i - 1])

        def tridiagonal(r):                                                 # r: list of (..., P0, H)
            y = [r[0]]
            for i in range(1, P1):
                y.append(r[i] - mult[i - 1] * y[i - 1])
            x = [None] * P1
            x[-1] = y[-1] / piv[-1]
            for i in range(P1 - 2, -1, -1):
                x[i] = (y[i] - off[i] * x[i + 1]) / piv[i]
            return x

        if cyclic:
            u = [gamma] + [torch.zeros_like(gamma)] * (P1 - 2) + [corner]
            z = tridiagonal(u)
            ratio = corner / gamma
            zw = torch.stack(z, dim=-2) / (1 + z[0] + ratio * z[-1])[..., None, :]

        def solve(r):
            B = r.shape[0]
            R = r.reshape(B, P0, P1, H)
            if P0 > 1:
                R = torch.einsum("ij,bipn->bjpn", Q0, R)
            x = torch.stack(tridiagonal(list(R.unbind(dim=2))), dim=2)
            if cyclic:
                x = x - (x[:, :, 0] + ratio * x[:, :, -1])[:, :, None, :] * zw
            if P0 > 1:
                x = torch.einsum("ij,bjpn->bipn", Q0, x)
            return x.reshape(B, -1)

        return solve

    # integrators (eqs. 12-16, 36) ----------------------------------------------------------------
    def _step_fn(self, circ):
        torch = _torch()
        spec, dt = self.spec, self.spec.dt
        C, g, leak, beta, A = circ
        K = C.shape[0]
        if spec.integrator == "euler":
            return lambda Y, I: [v + dt * f for v, f in zip(Y, self.rhs(circ, Y, I))]
        if spec.integrator == "expeuler":
            d = torch.stack([self.diag(A, k, C[k]) for k in range(K)])
            a = dt * (g - d) / C
            safe = torch.where(a == 0, torch.ones_like(a), a)
            phi1 = torch.where(a == 0, torch.ones_like(a), -torch.expm1(-safe) / safe)
            E, p = torch.exp(-a), dt * phi1 / C

            def expeuler(Y, I):
                out = []
                for k in range(K):
                    off = self.apply(A, k, Y[k])
                    q = -leak[k] if off is None else (off - Y[k] * d[k]) - leak[k]
                    q = q + (I if k == 0 else beta[k] * Y[k - 1])
                    out.append(E[k] * Y[k] + p[k] * q)
                return out
            return expeuler
        if spec.integrator in ("implicit", "trapezoidal"):            # eqs. 15 and 36
            h, solvers = self._implicit_solvers(circ)
            trapezoidal = spec.integrator == "trapezoidal"

            def implicit(Y, I):
                F = self.rhs(circ, Y, I) if trapezoidal else None
                out = []
                for k in range(K):
                    u = I if k == 0 else beta[k] * out[k - 1]
                    r = h[k] * Y[k] - leak[k] + u
                    out.append(solvers[k](r + C[k] * F[k] if trapezoidal else r))
                return out
            return implicit
        if spec.integrator != "rk4":
            raise ValueError(f"the PyTorch port has no integrator {spec.integrator!r}")
        rk4 = INTEGRATORS["rk4"]

        def runge_kutta(Y, I):
            slopes, prev = [], None
            for c in rk4.nodes:
                Yi = Y if prev is None else [v + (dt * c) * s for v, s in zip(Y, prev)]
                prev = self.rhs(circ, Yi, I)
                slopes.append(prev)
            return [v + dt * sum(w * s[k] for w, s in zip(rk4.weights, slopes)) for k, v in enumerate(Y)]
        return runge_kutta

    # readout (eqs. 18-20) ------------------------------------------------------------------------
    def readout(self, circ, Y, I):
        torch = _torch()
        if self.spec.readout == "last":
            return Y[-1]
        if self.spec.readout == "cells":
            return torch.cat(Y, dim=1)
        Z = [self.rhs(circ, Y, I)]
        for _ in range(1, len(Y)):
            Z.append(self.rhs(circ, Z[-1], I, affine=False))
        return torch.cat([Y[-1]] + [z[-1] for z in Z], dim=1)

    def forward(self, params, x, V0=None):
        """Layer output for tensors ``params`` (dict), ``x`` and optional ``V0`` (B, K, N)."""
        torch = _torch()
        spec = self.spec
        B, N, K = x.shape[0], spec.total_nodes, spec.order
        sequence = x.ndim == (4 if spec.coupling == "grid" else 3)
        T = x.shape[1] if sequence else spec.n_steps
        I = (x @ params["W"].T + params["b"]).reshape(B, T if sequence else 1, N)
        circ = self.circuit(params)
        step = self._step_fn(circ)
        if V0 is None:
            Y = [torch.zeros(B, N, dtype=x.dtype, device=x.device) for _ in range(K)]
        else:
            Y = list(V0.unbind(dim=1))
        outputs = []
        for n in range(T):
            In = I[:, n if sequence else 0]
            Y = step(Y, In)
            if spec.return_sequences:
                outputs.append(self.readout(circ, Y, In))
        if spec.return_sequences:
            return torch.stack(outputs, dim=1)
        return self.readout(circ, Y, I[:, T - 1 if sequence else 0])


def forward_backward(spec, params, x, dy, V0=None, device="cpu"):
    """Output and gradients (same keys as the reference's) of ``sum(dy * y)`` for NumPy inputs.

    Returns
    -------
    y : ndarray
    grads : dict of ndarray
    """
    tensors = to_tensors(dict(params, x=x, **({} if V0 is None else {"V0": V0})), device, requires_grad=True)
    layer = TorchLayer(spec, device)
    p = {k: tensors[k] for k in params}
    y = layer.forward(p, tensors["x"], tensors.get("V0"))
    y.backward(to_tensors({"dy": dy}, device)["dy"])
    grads = {k: np.zeros(t.shape, y.detach().cpu().numpy().dtype) if t.grad is None  # unused (beta, K = 1)
             else t.grad.detach().cpu().numpy() for k, t in tensors.items()}
    return y.detach().cpu().numpy(), grads
