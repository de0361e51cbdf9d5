"""From a backward pass's sums to the gradients of every raw parameter, ``x`` and ``V0`` (eqs. 29-35)."""
from .integrators import finalize
from .linalg.projection import project_vjp
from .parameterization import circuit_vjp


def assemble(spec, dparams, tape, sums, dI, dV0, dW_db=None):
    """Gradients (device arrays) from the reduced sums (K, slots, N) and the input-current cotangent.

    Parameters
    ----------
    spec : LayerSpec
    dparams : dict of device arrays
    tape : DeviceTape
    sums : device array (K, N_SLOTS, N)
    dI : device array (B, Tin, N)
        Cotangent of the input current per step (``Tin = 1``: summed over the steps of a static input).
    dV0 : device array (B, K, N) or None
    dW_db : (device array (N, D), device array (N,)), optional
        The projection's weight and bias gradients when the family's kernels summed them already.

    Returns
    -------
    dict of device arrays
    """
    coupling = tape.coupling
    dC, dg, dleak, dbeta, dd, dnode = finalize(spec, tape.circuit, tape.consts, sums, *coupling.finalize_inputs())
    grads = circuit_vjp(spec, dparams, dC, dg, dleak, dbeta, coupling.param_grad(tape.consts, dd, dnode))
    x = tape.x
    D, H = spec.in_features, spec.n_nodes
    rows = x.size // D
    dW, db, dx2 = project_vjp(x.reshape(rows, D), dparams["W"], dI.reshape(rows, H), dW_db)
    grads.update(W=dW, b=db, x=dx2.reshape(x.shape))
    if dV0 is not None:
        grads["V0"] = dV0
    return grads
