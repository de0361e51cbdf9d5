"""The parameterization on the device (eqs. 8-11) and its adjoint (eq. 35): twins of
:func:`kinn_ref.parameterization.make_circuit` and :func:`~kinn_ref.parameterization.circuit_vjp`.
"""
from types import SimpleNamespace
from dataclasses import dataclass

from .node_math.scalars import scalar_functions
from .runtime.compat import cuda_module
from .runtime.device import empty, kernel_cache, launch_1d, scalar

cuda = cuda_module()


@dataclass
class DeviceCircuit:
    """Circuit quantities on the device (see :class:`kinn_ref.parameterization.Circuit`).

    Attributes
    ----------
    C, g, leak, beta : device array, shape (K, N)
        Per node (grid: per channel, repeated over the points; node ``p*H + h``).
    A : device array or None
        ``G`` (dense, the raw array itself), ``S`` (kirchhoff, ``(K, N, N)``), ``s`` (grid, ``(K, H)``).
    """

    C: object
    g: object
    leak: object
    beta: object
    A: object = None


@kernel_cache
def _kernels(dtype):
    fn = scalar_functions(dtype)
    softplus, sigmoid = fn.softplus, fn.sigmoid
    half, zero = scalar(dtype, 0.5), scalar(dtype, 0.0)

    @cuda.jit
    def nodes(C_raw, g_raw, leak_raw, beta_raw, C, g, leak, beta, c_min, positive, H):
        """Per node ``(k, p*H + h)``: eqs. 9-10 or the raw values, repeated over grid points."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = C.shape
        while i < K * N:
            k = i // N
            h = (i % N) % H
            n = i % N
            if positive:
                C[k, n] = c_min + softplus(C_raw[k, h])
                g[k, n] = softplus(g_raw[k, h])
            else:
                C[k, n] = C_raw[k, h]
                g[k, n] = g_raw[k, h]
            leak[k, n] = leak_raw[k, h]
            beta[k, n] = beta_raw[k, h]
            i += stride

    @cuda.jit
    def kirchhoff(R, S, positive):
        """``S = softplus((R + R^T)/2)`` (or without softplus) with zero diagonal (eq. 11)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = R.shape[0], R.shape[1]
        while i < K * N * N:
            k = i // (N * N)
            r = (i // N) % N
            c = i % N
            if r == c:
                S[k, r, c] = zero
            else:
                z = half * (R[k, r, c] + R[k, c, r])
                S[k, r, c] = softplus(z) if positive else z
            i += stride

    @cuda.jit
    def grid_edges(G_raw, s, positive):
        """Grid edge conductance ``s = softplus(G_raw)`` or raw (eq. 11)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, H = s.shape
        while i < K * H:
            k = i // H
            h = i % H
            s[k, h] = softplus(G_raw[k, h]) if positive else G_raw[k, h]
            i += stride

    @cuda.jit
    def nodes_vjp(dC, dg, dleak, dbeta, C_raw, g_raw, d_C_raw, d_g_raw, d_leak, d_beta, positive, H):
        """Eq. 35 for the per-node arrays: sum over grid points in order, then the softplus factor."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = dC.shape
        P = N // H
        while i < K * H:
            k = i // H
            h = i % H
            sC = zero
            sg = zero
            sl = zero
            sb = zero
            for p in range(P):
                n = p * H + h
                sC += dC[k, n]
                sg += dg[k, n]
                sl += dleak[k, n]
                sb += dbeta[k, n]
            if positive:
                sC *= sigmoid(C_raw[k, h])
                sg *= sigmoid(g_raw[k, h])
            d_C_raw[k, h] = sC
            d_g_raw[k, h] = sg
            d_leak[k, h] = sl
            d_beta[k, h] = sb if k > 0 else zero
            i += stride

    @cuda.jit
    def kirchhoff_vjp(dS, R, dR, positive):
        """``dR = (Q + Q^T)/2``, ``Q = dS * mask * sigmoid((R + R^T)/2)`` (eq. 35)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = R.shape[0], R.shape[1]
        while i < K * N * N:
            k = i // (N * N)
            r = (i // N) % N
            c = i % N
            if r == c:
                dR[k, r, c] = zero
            else:
                q = dS[k, r, c] + dS[k, c, r]
                if positive:
                    q *= sigmoid(half * (R[k, r, c] + R[k, c, r]))
                dR[k, r, c] = half * q
            i += stride

    @cuda.jit
    def grid_edges_vjp(ds, G_raw, dG, positive):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, H = ds.shape
        while i < K * H:
            k = i // H
            h = i % H
            dG[k, h] = ds[k, h] * sigmoid(G_raw[k, h]) if positive else ds[k, h]
            i += stride

    return SimpleNamespace(nodes=nodes, kirchhoff=kirchhoff, grid_edges=grid_edges, nodes_vjp=nodes_vjp,
                           kirchhoff_vjp=kirchhoff_vjp, grid_edges_vjp=grid_edges_vjp)


def make_circuit(spec, dparams):
    """Device twin of :func:`kinn_ref.parameterization.make_circuit` (no check of ``C > 0`` in raw mode).

    Parameters
    ----------
    spec : LayerSpec
    dparams : dict of device arrays
        Raw parameters, keys and shapes of ``spec.param_shapes()``.

    Returns
    -------
    DeviceCircuit
    """
    dtype = dparams["W"].dtype
    k_ = _kernels(dtype.str)
    nodes, kirchhoff, grid_edges = k_.nodes, k_.kirchhoff, k_.grid_edges
    K, N, H = spec.order, spec.total_nodes, spec.n_nodes
    positive = spec.param == "positive"
    C, g, leak, beta = (empty((K, N), dtype) for _ in range(4))
    launch_1d(nodes, K * N, dparams["C_raw"], dparams["g_raw"], dparams["leak"], dparams["beta"], C, g, leak, beta,
              scalar(dtype, spec.c_min if positive else 0.0), positive, H)
    A = None
    if spec.coupling == "dense":
        A = dparams["G_raw"]
    elif spec.coupling == "kirchhoff":
        A = empty((K, N, N), dtype)
        launch_1d(kirchhoff, K * N * N, dparams["G_raw"], A, positive)
    elif spec.coupling == "grid":
        A = empty((K, H), dtype)
        launch_1d(grid_edges, K * H, dparams["G_raw"], A, positive)
    return DeviceCircuit(C=C, g=g, leak=leak, beta=beta, A=A)


def circuit_vjp(spec, dparams, dC, dg, dleak, dbeta, dA):
    """Device twin of :func:`kinn_ref.parameterization.circuit_vjp`.

    Parameters
    ----------
    spec : LayerSpec
    dparams : dict of device arrays
    dC, dg, dleak, dbeta : device array, shape (K, N)
        Gradients of the per-node circuit quantities.
    dA : device array or None
        Gradient of the effective coupling parameter (shape of ``DeviceCircuit.A``).

    Returns
    -------
    dict of device arrays
        ``C_raw, g_raw, leak, beta`` and ``G_raw`` where the coupling has one.
    """
    dtype = dparams["W"].dtype
    k_ = _kernels(dtype.str)
    nodes_vjp, kirchhoff_vjp, grid_edges_vjp = k_.nodes_vjp, k_.kirchhoff_vjp, k_.grid_edges_vjp
    K, H = spec.order, spec.n_nodes
    positive = spec.param == "positive"
    out = {name: empty((K, H), dtype) for name in ("C_raw", "g_raw", "leak", "beta")}
    launch_1d(nodes_vjp, K * H, dC, dg, dleak, dbeta, dparams["C_raw"], dparams["g_raw"], out["C_raw"],
              out["g_raw"], out["leak"], out["beta"], positive, H)
    if spec.coupling == "dense":
        out["G_raw"] = dA
    elif spec.coupling == "kirchhoff":
        out["G_raw"] = empty(dA.shape, dtype)
        launch_1d(kirchhoff_vjp, dA.size, dA, dparams["G_raw"], out["G_raw"], positive)
    elif spec.coupling == "grid":
        out["G_raw"] = empty((K, H), dtype)
        launch_1d(grid_edges_vjp, K * H, dA, dparams["G_raw"], out["G_raw"], positive)
    return out
