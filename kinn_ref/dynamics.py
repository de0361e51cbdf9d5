"""Kirchhoff's current law for the stacked cascade (docs/math.md, eqs. 1-3) and its adjoint.

States are stacked as ``Y`` of shape ``(B, K, N)``; ``Y[:, k]`` is ``V_k``.
"""
import numpy as np

from .parameterization import Circuit


def zero_grads(circuit):
    """A :class:`Circuit` of zeros: the accumulator for circuit gradients."""
    return Circuit(C=np.zeros_like(circuit.C), g=np.zeros_like(circuit.g), leak=np.zeros_like(circuit.leak),
                   beta=np.zeros_like(circuit.beta), A=None if circuit.A is None else np.zeros_like(circuit.A))


def add_coupling_grad(acc, k, dA):
    """Add the gradient ``dA`` of cell ``k``'s coupling to the accumulator (None means no coupling)."""
    if dA is not None:
        acc.A[k] += dA


def drive(circuit, Y, I, k):
    """Drive ``u_k`` of cell ``k`` (eq. 2): ``I`` for the first cell, ``beta_k V_{k-1}`` after it."""
    return I if k == 0 else circuit.beta[k] * Y[:, k - 1]


def rhs(circuit, coupling, Y, I, affine=True):
    """Right-hand side ``F(Y, I)`` of ``dY/dt = F`` (eqs. 1-3).

    Parameters
    ----------
    circuit : Circuit
    coupling : Coupling
    Y : ndarray, shape (B, K, N)
    I : ndarray, shape (B, N)
        Input current of the first cell.
    affine : bool
        When False, drop ``leak`` and ``I``: the linear part ``J Y`` (eq. 21).

    Returns
    -------
    ndarray, shape (B, K, N)
    """
    F = np.empty_like(Y)
    for k in range(Y.shape[1]):
        V = Y[:, k]
        cur = coupling.apply(k, V) - circuit.g[k] * V
        if affine:
            cur = cur - circuit.leak[k] + (I if k == 0 else 0)
        if k > 0:
            cur = cur + circuit.beta[k] * Y[:, k - 1]
        F[:, k] = cur / circuit.C[k]
    return F


def rhs_vjp(circuit, coupling, Y, I, dF, acc, affine=True):
    """Adjoint of :func:`rhs` (eq. 26): ``dY`` and ``dI`` for the cotangent ``dF``; circuit gradients into ``acc``.

    With ``F_k = cur_k / C_k``: ``dC_k = -sum_b dF_k F_k / C_k``; ``z_k = dF_k / C_k`` is the cotangent of
    the current, which flows to ``V_k`` through ``A_k^T - g_k``, to ``V_{k-1}`` through ``beta_k``, to
    ``leak_k`` with a minus sign and to ``I`` for ``k = 0``.

    Returns
    -------
    dY : ndarray, shape (B, K, N)
    dI : ndarray, shape (B, N), or None when ``affine`` is False
    """
    F = rhs(circuit, coupling, Y, I, affine)
    dY = np.zeros_like(Y)
    dI = None
    for k in range(Y.shape[1]):
        V = Y[:, k]
        z = dF[:, k] / circuit.C[k]
        acc.C[k] -= (dF[:, k] * F[:, k]).sum(axis=0) / circuit.C[k]
        acc.g[k] -= (z * V).sum(axis=0)
        dY[:, k] += coupling.apply_T(k, z) - circuit.g[k] * z
        add_coupling_grad(acc, k, coupling.grad(k, z, V))
        if affine:
            acc.leak[k] -= z.sum(axis=0)
            if k == 0:
                dI = z
        if k > 0:
            acc.beta[k] += (z * Y[:, k - 1]).sum(axis=0)
            dY[:, k - 1] += circuit.beta[k] * z
    return dY, dI
