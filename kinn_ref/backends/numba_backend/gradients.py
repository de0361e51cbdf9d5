"""Circuit gradients from the kernels' per-group sums, once per backward pass (NumPy).

The kernels keep sums that do not need the circuit gradient's final form; this module adds the groups
in order and applies what the reference does per step: the coupling's ``diag_grad`` and, for
dense/kirchhoff exponential Euler, the share of ``dp`` and of the gradient of ``O`` carried by
``sum dV'^T V``. The integrator's per-pass terms are then chained by the reference ``finalize_vjp``.
"""
from types import SimpleNamespace

import numpy as np

from ...integrators import INTEGRATORS
from ...parameterization import Circuit
from .codes import (COUP_O, MAT_EXP, MAT_ZV, NODE_P, SUM_BETA, SUM_C, SUM_G, SUM_GRID_OFF, SUM_LEAK, SUM_PASS1,
                    SUM_PASS2, SUM_ZV)


def _ordered_sum(parts):
    """Sum over the first axis in index order (the groups of :func:`.dispatch.sum_groups`)."""
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


def circuit_gradients(spec, tape_ctx, coupling, node_sums, mat_sums, dtype):
    """The gradient of the circuit (a :class:`~kinn_ref.parameterization.Circuit`) in ``dtype``.

    Parameters
    ----------
    spec : LayerSpec
    tape_ctx : PassContext
        The forward pass's context (kernel constants and the reference integrator context).
    coupling : Coupling
        The reference coupling operator of the pass.
    node_sums : ndarray, shape (n_groups, N_NODE_SUMS, K, N), float64
    mat_sums : ndarray, shape (n_groups, N_MATRIX_SUMS, K, N, N) or (n_groups, N_MATRIX_SUMS, K, 0, 0)
    dtype : numpy.dtype
    """
    S = _ordered_sum(node_sums)
    K = S.shape[1]
    cs = tape_ctx.constants
    dp_coupling = 0.0
    A = None
    if spec.coupling in ("dense", "kirchhoff"):
        M = _ordered_sum(mat_sums)
        off = M[MAT_ZV]
        if spec.integrator == "expeuler":
            Mq = M[MAT_EXP]
            off = off + cs.node[NODE_P].astype(np.float64)[:, :, None] * Mq
            dp_coupling = (cs.coupling_mats[COUP_O].astype(np.float64) * Mq).sum(axis=2)
        if spec.coupling == "dense":
            idx = np.arange(off.shape[1])
            off[:, idx, idx] = 0.0
        A = np.stack([off[k] + coupling.diag_grad(k, S[SUM_ZV, k]) for k in range(K)])
    elif spec.coupling == "grid":
        per_channel = S[SUM_GRID_OFF].reshape(K, spec.n_points, spec.n_nodes).sum(axis=1)
        A = np.stack([per_channel[k] + coupling.diag_grad(k, S[SUM_ZV, k]) for k in range(K)])
    acc = Circuit(C=S[SUM_C].astype(dtype), g=S[SUM_G].astype(dtype), leak=S[SUM_LEAK].astype(dtype),
                  beta=S[SUM_BETA].astype(dtype), A=None if A is None else A.astype(dtype))
    integrator = INTEGRATORS[spec.integrator]
    if spec.integrator == "expeuler":
        ctx = SimpleNamespace(**vars(tape_ctx.integrator_ctx))
        ctx.dE, ctx.dp = S[SUM_PASS1].astype(dtype), (S[SUM_PASS2] + dp_coupling).astype(dtype)
        integrator.finalize_vjp(ctx, acc)
    elif integrator.capacitance_scale is not None:       # implicit, trapezoidal: dh and dc
        ctx = SimpleNamespace(dt=spec.dt, dh=S[SUM_PASS1].astype(dtype), dc=S[SUM_PASS2].astype(dtype))
        integrator.finalize_vjp(ctx, acc)
    return acc
