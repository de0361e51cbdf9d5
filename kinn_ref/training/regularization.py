"""Conductance regularisation: a penalty on the magnitudes of each KINN layer's conductances.

For every KINN layer of a model, with the circuit of docs/math.md (leak conductance ``g`` and the
coupling's effective parameter ``A``: dense ``G``, kirchhoff ``S``, grid edge conductances ``s``)::

    R = strength * sum_layers ( mean(g^2) + mean(A^2) )

Its gradient with respect to the raw parameters is the adjoint of the parameterization, computed with the
core's :func:`kinn_ref.parameterization.circuit_vjp`.
"""
import numpy as np

from .._checks import check_real
from ..parameterization import Circuit, circuit_vjp, make_circuit


def kinn_layers(model):
    """``(flat name prefix, layer)`` of the KINN layers of ``model`` (those with a ``spec``)."""
    return [(name, mod) for name, mod in model.modules() if hasattr(mod, "spec")]


def conductance_penalty(model, strength):
    """Value and gradient of the conductance penalty.

    Parameters
    ----------
    model : KINN or MLP
        Anything with ``modules()``; modules without a ``spec`` contribute nothing.
    strength : float
        Penalty weight, >= 0.

    Returns
    -------
    value : float
    grads : dict of str -> ndarray
        Gradients keyed by the flat names of ``model.parameters()`` (only the parameters it touches).
    """
    strength = check_real("strength", strength, 0.0)
    value, grads = 0.0, {}
    for prefix, layer in kinn_layers(model):
        circuit = make_circuit(layer.spec, layer.params)
        value += float(np.mean(circuit.g ** 2))
        dA = None
        if circuit.A is not None:
            value += float(np.mean(circuit.A ** 2))
            dA = (2.0 * strength / circuit.A.size) * circuit.A
        zeros = np.zeros_like(circuit.C)
        d_circuit = Circuit(C=zeros, g=(2.0 * strength / circuit.g.size) * circuit.g, leak=zeros, beta=zeros,
                            A=dA)
        d_raw = circuit_vjp(layer.spec, layer.params, d_circuit)
        grads[f"{prefix}.g_raw"] = d_raw["g_raw"]
        if dA is not None:
            grads[f"{prefix}.G_raw"] = d_raw["G_raw"]
    return strength * value, grads
