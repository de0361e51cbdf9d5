"""A trainer's network on the device: KINN layers with their input projections, linear layers and heads, and
the activations between them, parameters and activations kept as device arrays.

:class:`DeviceNetwork` is the twin of :meth:`kinn_ref.network.KINN.forward` / :meth:`~kinn_ref.network.KINN.backward`
and of :meth:`kinn_ref.training.models.MLP.forward` / :meth:`~kinn_ref.training.models.MLP.backward` for the
host model it is built from: same modules, same flat parameter names (``"layers.0.W"``, ``"head.b"``). KINN
layers run :func:`.backend.run_forward` / :func:`.backend.run_backward` with the spec the host layer holds
when the pass runs (a stability guard may have changed its ``dt``); linear layers run :mod:`.linear`; the
activations :mod:`.activations`.

A grid layer's readout is regrouped per grid point for the next layer or the head (:mod:`.regroup`, as
``KINN._to_points`` does).
"""
import numpy as np

from ...layers import KINNLayer
from ...network import Linear
from ..launch_warnings import quiet_launches
from .activations import activation, activation_vjp
from .backend import run_backward, run_forward, upload
from .linear import linear_backward, linear_forward
from .regroup import from_points, to_points


def unsupported(model):
    """Why ``model`` cannot run on the device network, or None."""
    if getattr(model, "pool", "points") != "points":
        return f"its grid readout is pooled (pool={model.pool!r}), which the device network does not do"
    for prefix, module in model.modules():
        if not isinstance(module, (KINNLayer, Linear)):
            return f"{prefix} is a {type(module).__name__}, not a KINN or linear layer"
    return None


class DeviceNetwork:
    """Device twin of a host KINN or MLP model (see the module docstring).

    Parameters
    ----------
    model : kinn_ref.network.KINN or kinn_ref.training.models.MLP
        Its parameters are copied to the device here (one copy per array); its KINN layers' specs are read
        at every pass.

    Attributes
    ----------
    params : dict of device arrays
        By the flat names of ``model.parameters()``; updated in place by a device optimizer.
    """

    def __init__(self, model):
        why = unsupported(model)
        if why is not None:
            raise ValueError(f"model: {why}; the device network runs KINN layers, linear layers and heads")
        self.model = model
        self.params = {k: upload(v) for k, v in model.parameters().items()}
        self.names = tuple(self.params)
        self.activation = model.activation
        self._modules = list(model.modules())
        self._trace = []

    def _module_params(self, prefix, module):
        return {k: self.params[f"{prefix}.{k}"] for k in module.trainable}

    def load_host_parameters(self):
        """Copy the host model's parameters to the device arrays (after a checkpoint was loaded into it)."""
        for k, v in self.model.parameters().items():
            self.params[k].copy_to_device(np.ascontiguousarray(v))

    def copy_parameters_to_host(self, names=None):
        """Copy the device parameters (``names``, default all) into the host model's arrays, in place."""
        host = self.model.parameters()
        for k in self.names if names is None else names:
            self.params[k].copy_to_host(host[k])

    def kinn_layers(self):
        """``(prefix, spec, device parameters)`` of each KINN layer, the spec the host layer holds now."""
        return [(prefix, m.spec, self._module_params(prefix, m)) for prefix, m in self._modules
                if isinstance(m, KINNLayer)]

    def kinn_names(self):
        """The flat names of the KINN layers' parameters (what a stability guard reads)."""
        return tuple(f"{prefix}.{k}" for prefix, m in self._modules if isinstance(m, KINNLayer) for k in m.trainable)

    @quiet_launches
    def forward(self, x):
        """Network output for ``x`` (twin of the host model's ``forward``); keeps what :meth:`backward` needs.

        Parameters
        ----------
        x : device array
            The first layer's input layout, ``(B, D)``, ``(B, T, D)``, grid ``(B, [T,] P, D)``.

        Returns
        -------
        device array
            The host model's output shape.
        """
        self._trace = []            # per module: (its tape or None, its input, (z, f(z)) of the activation after it)
        hidden = len(self.model.layers) - 1
        for i, (prefix, module) in enumerate(self._modules):
            p = self._module_params(prefix, module)
            tape = None
            if isinstance(module, KINNLayer):
                # the tape refers to x and the parameters: neither changes before the backward pass
                y, tape = run_forward(module.spec, p, x, None, module.checkpoint_every, own_inputs=False)
                y = to_points(module.spec, y)
            else:
                y = linear_forward(x, p["W"], p["b"])
            # the activation goes between the layers: none after the last layer, none after a head
            act = (y, activation(self.activation, y)) if i < hidden else None
            self._trace.append((tape, x, act))
            x = y if act is None else act[1]
        return x

    @quiet_launches
    def backward(self, dy):
        """Gradients of ``sum(dy * output)`` of the last :meth:`forward` (twin of the host model's ``backward``).

        Parameters
        ----------
        dy : device array, the output's shape

        Returns
        -------
        dict of device arrays
            By the names of :attr:`params`.
        """
        grads = {}
        for (prefix, module), (tape, x, act) in zip(reversed(self._modules), reversed(self._trace)):
            if act is not None:
                dy = activation_vjp(self.activation, act[0], act[1], dy)
            if tape is not None:
                g = run_backward(module.spec, tape, from_points(module.spec, dy))
                dy = g["x"]
                grads.update({f"{prefix}.{k}": g[k] for k in module.trainable})
            else:
                dW, db, dy = linear_backward(x, self.params[f"{prefix}.W"], dy)
                grads.update({f"{prefix}.W": dW, f"{prefix}.b": db})
        return {k: grads[k] for k in self.names}
