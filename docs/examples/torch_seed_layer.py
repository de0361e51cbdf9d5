"""The seed document's PyTorch layer, as written there, checked against the golden suite.

``KINNLayers`` and ``KINN`` below are the seed document's code (docs/math.md eq. 17); only its lost
indentation is restored. The layer has three parameters of its own, ``capacitance`` C, ``conductance`` G
(a free N x N matrix) and ``leak``, and integrates ``v <- v + dt (x + v G^T - leak) / C`` from zero for
``n_steps`` explicit Euler steps; ``x`` is the input current itself.

The adapter maps the case's raw parameters to the layer's own (docs/math.md eqs. 8-10, under the case's
``param`` mode)::

    capacitance = C(C_raw)                        C = c_min + softplus(C_raw), or C_raw itself
    conductance = G_raw - diag(g(g_raw))          the leak conductance is the diagonal of a dense coupling
    leak        = leak

and the layer's autograd gradients back to the raw ones (eq. 35). It declares what it implements:
``C_raw``, ``g_raw``, ``G_raw``, ``leak`` and ``x``; the layer has no input projection ``W, b`` and no
cascade gain ``beta``, which the checker reports as not compared. It runs the cases the layer can
express (``layer: KINNLayers`` and any other with the same features: one cell, dense coupling, explicit
Euler, a static input that is the current itself, a zero initial state, the last state read out) and
reports the others as unsupported.

Check it (torch is in the bench extra):  kinn-ref golden check --impl docs/examples/torch_seed_layer.py:adapter
"""
import numpy as np
import torch
import torch.nn as nn


class KINNLayers(nn.Module):
    """Kirchhoff-Inspired Neural Network Layer"""

    def __init__(self, n_nodes, dt=0.1):
        super().__init__()
        self.n_nodes = n_nodes
        self.dt = dt
        # Learnable parameters
        self.capacitance = nn.Parameter(torch.ones(n_nodes))
        self.conductance = nn.Parameter(torch.randn(n_nodes, n_nodes))
        self.leak = nn.Parameter(torch.zeros(n_nodes))

    def forward(self, x, n_steps=10):
        """
        Args:
        x: Input current (batch, n_nodes)
        n_steps: Number of ODE integration steps
        Returns:
        Final state (batch, n_nodes)
        """
        v = torch.zeros_like(x)  # Initial state
        for _ in range(n_steps):
            # Kirchhoff's current law: C·dV/dt = ΣI_in - I_leak
            current_in = x + v @ self.conductance.T
            dvdt = (current_in - self.leak) / self.capacitance
            v = v + self.dt * dvdt
        return v


class KINN(nn.Module):
    """Multi-layer Kirchhoff-Inspired Neural Network"""

    def __init__(self, input_dim, hidden_dims, output_dim, dt=0.1, n_steps=10):
        super().__init__()
        layers = []
        prev_dim = input_dim
        for h_dim in hidden_dims:
            layers.append(KINNLayers(h_dim, dt))
            layers.append(nn.ReLU())
            prev_dim = h_dim
        layers.append(KINNLayers(output_dim, dt))
        self.layers = nn.ModuleList(layers)
        self.n_steps = n_steps

    def forward(self, x):
        for layer in self.layers:
            if isinstance(layer, KINNLayers):
                x = layer(x, self.n_steps)
            else:
                x = layer(x)
        return x


def _softplus(z):
    return np.logaddexp(0.0, z)


def _sigmoid(z):
    return np.exp(-np.logaddexp(0.0, -z))


class SeedLayerAdapter:
    """The seed layer behind the adapter protocol of docs/golden.md (``implements``, ``map_params``,
    ``map_grads``, and the ``case`` argument)."""

    implements = ("C_raw", "g_raw", "G_raw", "leak", "x")

    def map_params(self, params, case):
        """The layer's own parameters, shape (N,) and (N, N), from the raw ones (eqs. 8-10); a case the
        layer cannot express raises NotImplementedError (reported as unsupported)."""
        reason = self.unsupported(params, case)
        if reason:
            raise NotImplementedError(reason)
        spec = case.spec
        positive = spec["param"] == "positive"
        C = spec["c_min"] + _softplus(params["C_raw"][0]) if positive else params["C_raw"][0]
        g = _softplus(params["g_raw"][0]) if positive else params["g_raw"][0]
        return {"capacitance": C, "conductance": params["G_raw"][0] - np.diag(g), "leak": params["leak"][0]}

    def map_grads(self, grads, params, case):
        """The raw gradients from the layer's (eq. 35): the chain rule through :meth:`map_params`."""
        positive = case.spec["param"] == "positive"
        dC, dG = grads["capacitance"], grads["conductance"]
        dg = -np.diagonal(dG)
        if positive:
            dC = dC * _sigmoid(params["C_raw"][0])
            dg = dg * _sigmoid(params["g_raw"][0])
        return {"C_raw": dC[None], "g_raw": dg[None], "G_raw": dG[None], "leak": grads["leak"][None],
                "x": grads["x"]}

    def __call__(self, spec, params, x, V0, dy, case):
        dtype = torch.float32 if x.dtype == np.float32 else torch.float64
        layer = KINNLayers(spec["n_nodes"], spec["dt"]).to(dtype)
        with torch.no_grad():
            for name, value in params.items():
                getattr(layer, name).copy_(torch.from_numpy(np.asarray(value)))
        current = torch.tensor(x, requires_grad=True)
        y = layer(current, n_steps=spec["n_steps"])
        (y * torch.from_numpy(dy)).sum().backward()
        grads = {name: getattr(layer, name).grad.numpy() for name in params}
        return y.detach().numpy(), dict(grads, x=current.grad.numpy())

    @staticmethod
    def unsupported(params, case):
        """Why the layer cannot express this case, or '' when it can."""
        spec = case.spec
        needs = {"coupling": "dense", "integrator": "euler", "order": 1, "return_sequences": False}
        for key, value in needs.items():
            if spec[key] != value:
                return f"the seed layer has {key} {value!r}, the case {spec[key]!r}"
        if spec["readout"] not in ("last", "cells"):        # one cell: both are the final state
            return f"the seed layer reads out its final state, not {spec['readout']!r}"
        if case.input != "static":
            return "the seed layer takes a static input"
        if case.has_V0:
            return "the seed layer starts from zero"
        if case.layer != "KINNLayers" and not (
                spec["in_features"] == spec["n_nodes"] and np.array_equal(params["W"], np.eye(spec["n_nodes"]))
                and not np.any(params["b"])):
            return "the seed layer's input is the current itself (no projection W, b)"
        return ""


adapter = SeedLayerAdapter()
