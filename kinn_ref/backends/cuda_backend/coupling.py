"""Couplings on the device (eqs. 4-7): diagonals, per-pass matrices, gradient accumulators and the chain of
the accumulated sums into the gradient of the effective coupling parameter (eq. 34).

Twins of :mod:`kinn_ref.coupling`. ``none`` has nothing; ``dense`` and ``kirchhoff`` become per-cell
``N x N`` matrices applied by the tiled product (:mod:`.linalg.gemm`); ``grid`` is applied as a stencil inside the
step kernels (:mod:`.node_math.stencil`).
"""
from .runtime.device import zeros


class NoCoupling:
    """``A = 0`` (eq. 4)."""

    kind = "none"

    def __init__(self, spec, circuit):
        self.spec, self.circuit = spec, circuit
        self.dtype = circuit.C.dtype
        self.K, self.N = circuit.C.shape

    def diag(self):
        """``d_k = diag(A_k)``, shape (K, N)."""
        return zeros((self.K, self.N), self.dtype)

    def start_backward(self):
        """Allocate the coupling's gradient accumulators for one backward pass."""

    def finalize_inputs(self):
        """``(s, xdot, xdot_rhs)`` for :func:`.integrators.finalize`."""
        z = zeros((self.K, self.N), self.dtype)
        return zeros((self.K, 1), self.dtype), z, z

    def param_grad(self, consts, dd, dnode):
        """Gradient of the effective coupling parameter (None: there is none)."""
        return None


def make_coupling(spec, circuit):
    """The device coupling of ``spec`` for ``circuit``."""
    if spec.coupling == "none":
        return NoCoupling(spec, circuit)
    if spec.coupling == "grid":
        from .coupling_grid import GridCoupling
        return GridCoupling(spec, circuit)
    from .coupling_dense import MatrixCoupling
    return MatrixCoupling(spec, circuit)
