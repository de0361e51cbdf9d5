"""Couplings ``A_k`` between the nodes of a cell (docs/math.md, eqs. 4-7; gradients eq. 34).

Each coupling is an object built from the circuit's effective coupling parameter ``A`` and offers, per
cell ``k``: the product ``V A_k^T`` (:meth:`apply`), its adjoint ``Z A_k`` (:meth:`apply_T`), the gradient
of ``sum(Z * (V A_k^T))`` with respect to the effective parameter (:meth:`grad`), the diagonal
``d_k = diag(A_k)`` with its adjoint, and a solver for ``V (diag(c) - A_k)^T = rhs`` (implicit steps).
Arrays of states have shape ``(..., N)``; the off-diagonal helpers are defined once, in the base class.
"""
import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg


class Coupling:
    """Base class; subclasses implement the operator of one coupling kind."""

    def __init__(self, spec, A, dtype):
        self.spec, self.A, self.dtype = spec, A, dtype
        self.N = spec.total_nodes

    def apply_off(self, k, V):
        """``V O_k^T`` with ``O_k = A_k - diag(d_k)`` (eq. 13)."""
        return self.apply(k, V) - V * self.diag(k)

    def apply_off_T(self, k, Z):
        """Adjoint of :meth:`apply_off`: ``Z O_k``."""
        return self.apply_T(k, Z) - Z * self.diag(k)

    def grad_off(self, k, Z, V):
        """Gradient of ``sum(Z * (V O_k^T))`` with respect to ``A[k]``."""
        zv = (Z * V).reshape(-1, self.N).sum(axis=0)
        return self.grad(k, Z, V) - self.diag_grad(k, zv)

    def zeros_like_param(self):
        """Zero gradient accumulator for the effective parameter (None when there is none)."""
        return None if self.A is None else np.zeros_like(self.A)


class NoCoupling(Coupling):
    """``A = 0``: independent nodes (eq. 4)."""

    def apply(self, k, V):
        return np.zeros_like(V)

    apply_T = apply

    def grad(self, k, Z, V):
        return None

    def diag(self, k):
        return np.zeros(self.N, self.dtype)

    def diag_grad(self, k, dd):
        return None

    def grad_off(self, k, Z, V):
        return None

    def solver(self, k, c):
        return DiagonalSolver(c)


class DenseCoupling(Coupling):
    """``A = G``, a free matrix (eq. 5)."""

    def apply(self, k, V):
        return V @ self.A[k].T

    def apply_T(self, k, Z):
        return Z @ self.A[k]

    def grad(self, k, Z, V):
        return Z.reshape(-1, self.N).T @ V.reshape(-1, self.N)

    def diag(self, k):
        return np.diagonal(self.A[k]).copy()

    def diag_grad(self, k, dd):
        return np.diag(dd)

    def matrix(self, k):
        return self.A[k]

    def solver(self, k, c):
        return DenseSolver(np.diag(c) - self.matrix(k))


class KirchhoffCoupling(DenseCoupling):
    """``A = S - diag(S 1)`` with ``S`` symmetric, non-negative, zero diagonal (eq. 6).

    The current into node i is ``sum_j S_ij (V_j - V_i)``; the currents sum to zero over the layer.
    """

    def apply(self, k, V):
        S = self.A[k]
        return V @ S.T - V * S.sum(axis=1)

    def apply_T(self, k, Z):
        S = self.A[k]
        return Z @ S - Z * S.sum(axis=1)

    def grad(self, k, Z, V):
        Z2, V2 = Z.reshape(-1, self.N), V.reshape(-1, self.N)
        return Z2.T @ V2 - (Z2 * V2).sum(axis=0)[:, None]

    def diag(self, k):
        return -self.A[k].sum(axis=1)

    def diag_grad(self, k, dd):
        return np.broadcast_to(-dd[:, None], (self.N, self.N)).copy()

    def matrix(self, k):
        S = self.A[k]
        return S - np.diag(S.sum(axis=1))


class GridCoupling(Coupling):
    """RC mesh on a 1-D or 2-D grid with ``H`` channels, as a stencil (eq. 7).

    Node ``p*H + h`` is channel ``h`` of grid point ``p`` (points in row-major order). Each channel has
    its own edge conductance ``s[k, h]``; the boundary is periodic, neumann (no flux) or dirichlet
    (grounded through the edge conductance).
    """

    def __init__(self, spec, A, dtype):
        super().__init__(spec, A, dtype)
        self.shape, self.H, self.boundary = spec.grid_shape, spec.n_nodes, spec.boundary
        self.counts = -unit_laplacian_diagonal(self.shape, self.boundary).astype(dtype)  # (P,)

    def _grid(self, V):
        return V.reshape(V.shape[:-1] + self.shape + (self.H,))

    def _laplacian(self, V):
        """Unit-conductance mesh currents ``L0 V`` per channel, shape of ``V``."""
        U = self._grid(V)
        lead = U.ndim - len(self.shape) - 1
        out = np.zeros_like(U)
        for ax in range(lead, lead + len(self.shape)):
            if self.boundary == "periodic":
                out += np.roll(U, 1, axis=ax) + np.roll(U, -1, axis=ax) - 2 * U
                continue
            n = U.shape[ax]
            lo, hi = _slice(ax, 0, n - 1), _slice(ax, 1, n)
            flux = U[hi] - U[lo]               # current from point i+1 into point i
            out[lo] += flux
            out[hi] -= flux
            if self.boundary == "dirichlet":  # grounded ghost points beyond both edges
                out[_slice(ax, 0, 1)] -= U[_slice(ax, 0, 1)]
                out[_slice(ax, n - 1, n)] -= U[_slice(ax, n - 1, n)]
        return out.reshape(V.shape)

    def _per_node(self, s):
        return np.tile(s, self.spec.n_points)

    def apply(self, k, V):
        return self._laplacian(V) * self._per_node(self.A[k])

    apply_T = apply  # L0 is symmetric for all three boundaries

    def grad(self, k, Z, V):
        return (Z * self._laplacian(V)).reshape(-1, self.H).sum(axis=0)

    def diag(self, k):
        return -(self.counts[:, None] * self.A[k][None, :]).reshape(-1)

    def diag_grad(self, k, dd):
        return -(self.counts[:, None] * dd.reshape(-1, self.H)).sum(axis=0)

    def solver(self, k, c):
        return GridSolver(unit_laplacian_sparse(self.shape, self.boundary), c.reshape(-1, self.H),
                          self.A[k], self.dtype)


def _slice(axis, start, stop):
    idx = [slice(None)] * (axis + 1)
    idx[axis] = slice(start, stop)
    return tuple(idx)


def unit_laplacian_sparse(shape, boundary):
    """Sparse ``(P, P)`` mesh Laplacian ``L0`` of unit edge conductance (eq. 7), CSC format."""
    mats = []
    for n in shape:
        main = -2.0 * np.ones(n)
        if boundary == "neumann":          # one edge fewer at each end; none at all on a 1-point axis
            main[0] += 1.0
            main[-1] += 1.0
        L = scipy.sparse.diags([np.ones(n - 1), main, np.ones(n - 1)], [-1, 0, 1], format="lil")
        if boundary == "periodic":
            L[0, n - 1] += 1.0
            L[n - 1, 0] += 1.0
        mats.append(L.tocsr())
    if len(shape) == 1:
        return mats[0].tocsc()
    I0, I1 = scipy.sparse.identity(shape[0]), scipy.sparse.identity(shape[1])
    return (scipy.sparse.kron(mats[0], I1) + scipy.sparse.kron(I0, mats[1])).tocsc()


def unit_laplacian_diagonal(shape, boundary):
    """Diagonal of :func:`unit_laplacian_sparse`, shape ``(P,)``."""
    return unit_laplacian_sparse(shape, boundary).diagonal()


class DiagonalSolver:
    """Solve ``c * V = rhs`` (implicit step, no coupling)."""

    def __init__(self, c):
        self.c = c

    def solve(self, rhs):
        return rhs / self.c

    solve_T = solve


class DenseSolver:
    """Solve ``V M^T = rhs`` and ``L M = Z`` with one LU factorisation of ``M``."""

    def __init__(self, M):
        self.lu = scipy.linalg.lu_factor(M, check_finite=False)

    def solve(self, rhs):
        return scipy.linalg.lu_solve(self.lu, rhs.reshape(-1, rhs.shape[-1]).T, check_finite=False).T.reshape(rhs.shape)

    def solve_T(self, Z):
        return scipy.linalg.lu_solve(self.lu, Z.reshape(-1, Z.shape[-1]).T, trans=1,
                                     check_finite=False).T.reshape(Z.shape)


class GridSolver:
    """Per channel, solve the sparse ``(P, P)`` system ``(diag(c_h) - s_h L0) v = r`` (symmetric)."""

    def __init__(self, L0, c, s, dtype):
        self.H = c.shape[1]
        self.lus = [scipy.sparse.linalg.splu((scipy.sparse.diags(c[:, h]) - s[h] * L0).astype(dtype).tocsc())
                    for h in range(self.H)]

    def solve(self, rhs):
        R = rhs.reshape(-1, rhs.shape[-1] // self.H, self.H)  # (B, P, H)
        out = np.empty_like(R)
        for h, lu in enumerate(self.lus):
            out[:, :, h] = lu.solve(np.ascontiguousarray(R[:, :, h].T)).T
        return out.reshape(rhs.shape)

    solve_T = solve


COUPLING_CLASSES = {"none": NoCoupling, "dense": DenseCoupling, "kirchhoff": KirchhoffCoupling,
                    "grid": GridCoupling}


def make_coupling(spec, circuit):
    """Coupling operator of ``spec`` for the effective parameter ``circuit.A``."""
    return COUPLING_CLASSES[spec.coupling](spec, circuit.A, circuit.C.dtype)
