"""Per-pass constants of the compiled kernels: the circuit, the coupling operator and the integrator's
factorisations, gathered into one :class:`KernelConstants` tuple (twin of the reference's
``Integrator.prepare`` and ``Coupling.solver``; docs/math.md eqs. 4-7 and 12-17).

Everything here runs once per forward pass, in NumPy/SciPy; the kernels only read the arrays.
Arrays a coupling or integrator does not use are empty placeholders of the right rank, so the kernels
have one type signature per dtype.
"""
from collections import namedtuple

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse

from ...coupling import unit_laplacian_sparse
from ...integrators import INTEGRATORS
from .codes import (COUPLING_CODES, GRID, INTEGRATOR_CODES, N_NODE_PLANES, NODE_BETA, NODE_C, NODE_CI,
                    NODE_E, NODE_G, NODE_H, NODE_LEAK, NODE_P, NODE_S, READOUT_CODES)

KernelConstants = namedtuple("KernelConstants", [
    # codes and sizes
    "coupling", "integrator", "readout", "K", "N", "H", "P0", "P1", "cyclic",
    # step size in the computation dtype; Runge-Kutta dt*b_i and dt*c_i (2, 4)
    "dt", "rk4",
    # per-node quantities (N_NODE_PLANES, K, N), planes NODE_*: circuit C, g, leak, beta; expeuler decay E
    # and input weight p; implicit and trapezoidal h = s C/dt (s their capacitance_scale) and c = h + g; grid
    # per-node edge conductance s
    "node",
    # dense/kirchhoff coupling matrices (4, K, N, N), planes COUP_*: A_k, A_k^T, the off-diagonal part
    # O_k and O_k^T; (4, 0, 0, 0) otherwise
    "coupling_mats",
    # grid: off-diagonal unit Laplacian L0 in CSR (P+1,), (nnz,), (nnz,); per-node diagonal of L0 (N,)
    "lap_ptr", "lap_idx", "lap_val", "lap_diag",
    # implicit dense/kirchhoff: LU factors of diag(c) - A and their transposes (2, K, N, N), pivots (K, N)
    "lus", "piv",
    # implicit grid: eigenvectors of the first axis' Laplacian and their transpose (2, P0, P0); per cell,
    # first-axis mode and channel, the tridiagonal LU along the second axis (LAPACK gttrf layout) and the
    # Sherman-Morrison vector of periodic axes (5, K, P0, P1, H), planes TRI_*; row-swap flags
    # (K, P0, P1, H); Sherman-Morrison ratio (K, P0, H); whether a (cell, mode) swapped rows (K, P0)
    "Q", "tri", "tri_swap", "tri_rho", "tri_pivoted",
])
KernelConstants.coupling_kind = None


class UncoupledConstants(KernelConstants):
    """Constants of a pass without coupling (``coupling="none"``)."""
    __slots__ = ()
    coupling_kind = "none"


class MatrixConstants(KernelConstants):
    """Constants of a pass with a coupling matrix (``dense`` or ``kirchhoff``: the same kernels)."""
    __slots__ = ()
    coupling_kind = "matrix"


class GridConstants(KernelConstants):
    """Constants of a pass on a grid mesh (``coupling="grid"``)."""
    __slots__ = ()
    coupling_kind = "grid"


#: The class of a pass's constants by coupling: its type tells numba which coupling code to compile.
CONSTANTS_CLASS = {"none": UncoupledConstants, "dense": MatrixConstants, "kirchhoff": MatrixConstants,
                   "grid": GridConstants}


def _empty(dtype, ndim):
    return np.zeros((0,) * ndim, dtype)


def _grid_mesh(spec, dtype):
    """CSR arrays of the off-diagonal unit Laplacian ``L0`` and its per-node diagonal (eq. 7)."""
    L0 = unit_laplacian_sparse(spec.grid_shape, spec.boundary).tocsr()
    diag = L0.diagonal()
    off = (L0 - scipy.sparse.diags(diag)).tocsr()
    off.eliminate_zeros()
    off.sort_indices()
    return (off.indptr.astype(np.int64), off.indices.astype(np.int64), off.data.astype(dtype),
            np.repeat(diag, spec.n_nodes).astype(dtype))


def _tridiagonal_parts(n, boundary):
    """Sub, main and super diagonal of the 1-D unit Laplacian of length ``n`` and its corner entries."""
    L = unit_laplacian_sparse((n,), boundary).tocsr()
    corners = (L[0, n - 1], L[n - 1, 0]) if (boundary == "periodic" and n >= 3) else (0.0, 0.0)
    return L.diagonal(-1), L.diagonal(), L.diagonal(1), corners


def _factor_tridiagonal(gttrf, sub, diag, sup):
    """LAPACK ``gttrf`` of a tridiagonal matrix; the 1 x 1 and 2 x 2 cases (which SciPy's wrapper rejects)
    by its algorithm written out. Returns ``(dl, d, du, du2, ipiv, info)`` with 1-based ``ipiv``."""
    if diag.shape[0] > 2:
        return gttrf(sub, diag, sup)
    if diag.shape[0] == 1:                      # a 1-point axis: the system is its diagonal
        return sub.copy(), diag.copy(), sup.copy(), np.zeros(0, diag.dtype), np.ones(1, np.int32), \
            int(diag[0] == 0)
    dl, d, du = sub.copy(), diag.copy(), sup.copy()
    ipiv = np.array([1, 2], np.int32)
    if abs(d[0]) >= abs(dl[0]):
        if d[0] != 0:
            dl[0] = dl[0] / d[0]
            d[1] = d[1] - dl[0] * du[0]
    else:
        fact = d[0] / dl[0]
        d[0], dl[0] = dl[0], fact
        du[0], d[1] = d[1], du[0] - fact * d[1]
        ipiv[0] = 2
    zero = np.flatnonzero(d == 0)
    return dl, d, du, np.zeros(0, d.dtype), ipiv, int(zero[0]) + 1 if zero.size else 0


def _grid_factorisation(spec, c, s, dtype):
    """Factorise ``diag(c_h) - s_h L0`` per cell and channel, once per pass (eq. 15, grid).

    ``L0 = kron(L_a, I) + kron(I, L_b)`` for a 2-D grid (``L_a`` alone for 1-D). ``L_a`` is diagonalised,
    ``L_a = Q0 diag(lam) Q0^T``; in that basis every first-axis mode ``j`` leaves the tridiagonal (cyclic
    when the second axis is periodic) system ``(c_h - s_h lam_j) I - s_h L_b``, factorised by LAPACK
    ``gttrf`` with partial pivoting. The periodic corner entries are handled by Sherman-Morrison.
    """
    shape = spec.grid_shape if len(spec.grid_shape) == 2 else (1,) + tuple(spec.grid_shape)
    P0, P1 = shape
    K, H = s.shape
    if len(spec.grid_shape) == 2:     # a 1-point first axis too: its dirichlet L_a is [-2], not [0]
        lam, Q0 = np.linalg.eigh(unit_laplacian_sparse((P0,), spec.boundary).toarray())
    else:
        lam, Q0 = np.zeros(1), np.ones((1, 1))
    lower, main, upper, (alpha0, beta0) = _tridiagonal_parts(P1, spec.boundary)
    cyclic = alpha0 != 0.0
    gttrf, gttrs = scipy.linalg.lapack.get_lapack_funcs(("gttrf", "gttrs"), dtype=np.dtype(dtype))
    shape4 = (K, P0, P1, H)
    dl, d, du, du2 = (np.zeros(shape4, dtype) for _ in range(4))
    swap = np.zeros(shape4, np.int8)
    w = np.zeros(shape4, dtype)
    rho = np.zeros((K, P0, H), dtype)
    for k in range(K):
        for j in range(P0):
            for h in range(H):
                sk, ck = float(s[k, h]), float(c[k, h])
                diag = ck - sk * lam[j] - sk * main
                sub, sup = -sk * lower, -sk * upper
                if cyclic:
                    alpha, beta = -sk * alpha0, -sk * beta0
                    gamma = -diag[0] if diag[0] != 0.0 else -1.0
                    diag = diag.copy()
                    diag[0] -= gamma
                    diag[-1] -= alpha * beta / gamma
                f_dl, f_d, f_du, f_du2, ipiv, info = _factor_tridiagonal(
                    gttrf, sub.astype(dtype), diag.astype(dtype), sup.astype(dtype))
                if info > 0:
                    raise ValueError(f"the implicit grid system of cell {k}, channel {h} is singular "
                                     f"(C/dt + g and the edge conductance cancel); change dt or the parameters")
                dl[k, j, :P1 - 1, h], d[k, j, :, h], du[k, j, :P1 - 1, h] = f_dl, f_d, f_du
                du2[k, j, :P1 - 2, h] = f_du2
                swap[k, j, :, h] = ipiv != np.arange(1, P1 + 1)
                if cyclic:
                    u = np.zeros((P1, 1), dtype)
                    u[0, 0], u[-1, 0] = gamma, beta
                    z = gttrs(f_dl, f_d, f_du, f_du2, ipiv, u)[0][:, 0].astype(np.float64)
                    ratio = alpha / gamma
                    w[k, j, :, h] = z / (1.0 + z[0] + ratio * z[-1])
                    rho[k, j, h] = ratio
    return dict(P0=P0, P1=P1, cyclic=int(cyclic), Q=np.stack([Q0, Q0.T]).astype(dtype),
                tri=np.stack([dl, d, du, du2, w]), tri_swap=swap, tri_rho=rho,
                tri_pivoted=swap.any(axis=(2, 3)).astype(np.int8))


def _dense_matrices(spec, coupling, K):
    A = np.stack([coupling.matrix(k) for k in range(K)])
    O = A.copy()
    idx = np.arange(A.shape[1])
    O[:, idx, idx] = 0.0
    return np.ascontiguousarray(np.stack([A, A.transpose(0, 2, 1), O, O.transpose(0, 2, 1)]))


def prepare_constants(spec, circuit, coupling, dtype):
    """Kernel constants for one forward pass.

    Parameters
    ----------
    spec : LayerSpec
    circuit : Circuit
        From :func:`kinn_ref.parameterization.make_circuit`.
    coupling : Coupling
        The reference coupling operator (supplies the matrices, diagonals and the grid mesh).
    dtype : numpy.dtype

    Returns
    -------
    constants : KernelConstants
    integrator_ctx : SimpleNamespace or None
        The reference integrator's per-pass context where its ``finalize_vjp`` needs one (expeuler).
    """
    K, N = circuit.C.shape
    code = COUPLING_CODES[spec.coupling]
    rk4 = INTEGRATORS["rk4"]
    node = np.zeros((N_NODE_PLANES, K, N), dtype)
    node[NODE_C], node[NODE_G], node[NODE_LEAK], node[NODE_BETA] = circuit.C, circuit.g, circuit.leak, \
        circuit.beta
    fields = dict(
        coupling=code, integrator=INTEGRATOR_CODES[spec.integrator], readout=READOUT_CODES[spec.readout],
        K=K, N=N, H=spec.n_nodes, P0=1, P1=1, cyclic=0, dt=dtype.type(spec.dt),
        rk4=np.array([[spec.dt * w for w in rk4.weights], [spec.dt * c for c in rk4.nodes]], dtype),
        node=node, coupling_mats=_empty(dtype, 4),
        lap_ptr=np.zeros(1, np.int64), lap_idx=np.zeros(0, np.int64), lap_val=_empty(dtype, 1),
        lap_diag=_empty(dtype, 1), lus=_empty(dtype, 4), piv=np.zeros((0, 0), np.int64),
        Q=_empty(dtype, 3), tri=_empty(dtype, 5), tri_swap=np.zeros((0,) * 4, np.int8),
        tri_rho=_empty(dtype, 3), tri_pivoted=np.zeros((0, 0), np.int8),
    )
    if spec.coupling in ("dense", "kirchhoff"):
        fields.update(coupling_mats=_dense_matrices(spec, coupling, K))
    elif code == GRID:
        ptr, idx, val, diag = _grid_mesh(spec, dtype)
        node[NODE_S] = np.tile(circuit.A, (1, spec.n_points))
        fields.update(lap_ptr=ptr, lap_idx=idx, lap_val=val, lap_diag=diag)
    integrator_ctx = None
    if spec.integrator == "expeuler":
        integrator_ctx = INTEGRATORS["expeuler"].prepare(circuit, coupling, spec.dt)
        node[NODE_E], node[NODE_P] = integrator_ctx.E, integrator_ctx.p
    elif (scale := INTEGRATORS[spec.integrator].capacitance_scale) is not None:   # implicit, trapezoidal
        h = scale * circuit.C / spec.dt
        c = h + circuit.g
        node[NODE_H], node[NODE_CI] = h, c
        if spec.coupling in ("dense", "kirchhoff"):
            lus, pivs = zip(*(scipy.linalg.lu_factor(np.diag(c[k]) - coupling.matrix(k), check_finite=False)
                              for k in range(K)))
            lu = np.stack(lus).astype(dtype)
            fields.update(lus=np.ascontiguousarray(np.stack([lu, lu.transpose(0, 2, 1)])),
                          piv=np.stack(pivs).astype(np.int64))
        elif code == GRID:
            fields.update(_grid_factorisation(spec, c[:, :spec.n_nodes], circuit.A, dtype))
    return CONSTANTS_CLASS[spec.coupling](**fields), integrator_ctx
