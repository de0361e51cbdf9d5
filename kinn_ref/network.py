"""The multi-layer network ``KINN`` (the seed's signature, with input projections)."""
from collections.abc import Iterable

import numpy as np

from ._checks import check_choice, check_positive_int, check_seed
from .activations import ACTIVATIONS, activation
from .layers import KINNLayer

#: How a grid-coupled network hands its last per-point readout on (:class:`KINN`'s ``pool``).
POOLS = ("points", "flatten", "mean")


class Linear:
    """Affine map ``y = x W^T + b`` over the last axis (a network head)."""

    def __init__(self, in_features, out_features, *, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.params = {"W": (rng.standard_normal((out_features, in_features)) / np.sqrt(in_features)).astype(dtype),
                       "b": np.zeros(out_features, dtype)}
        self.trainable = ("W", "b")
        self.grads, self._x = None, None

    def __repr__(self):
        out_features, in_features = self.params["W"].shape
        return f"Linear({in_features} -> {out_features}, dtype={self.params['W'].dtype.name})"

    def forward(self, x):
        self._x = np.array(x, copy=True)              # the backward reads this pass's input, not the caller's array
        return x @ self.params["W"].T + self.params["b"]

    def backward(self, dy):
        x2, dy2 = self._x.reshape(-1, self._x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        self.grads = {"W": dy2.T @ x2, "b": dy2.sum(axis=0)}
        return dy @ self.params["W"]


class KINN:
    """Multi-layer KINN: KINN layers with an activation between them, the last one a KINN layer.

    Each layer projects its input with its own ``W`` (so any widths chain), which fixes the seed's shape
    bug. ``KINN(input_dim, hidden_dims, output_dim, dt, n_steps)`` is the seed's signature.

    Parameters
    ----------
    input_dim : int
        Input features ``D`` (per grid point for grid coupling).
    hidden_dims : sequence of int
        Nodes (grid: channels) of each hidden layer.
    output_dim : int
        Nodes (grid: channels) of the last KINN layer, and the output width of the head when ``head``.
    dt : float
    n_steps : int
    activation : {"relu", "tanh", "sigmoid", "softplus", "identity"}
    head : bool
        Add a linear head mapping the last readout (per grid point for grid coupling) to ``output_dim``.
    pool : {"points", "flatten", "mean"}
        What a grid-coupled network hands on from its last layer's per-point readout ``(..., P, width)``:
        ``"points"`` keeps it per point (the head acts at every point), ``"flatten"`` joins the points
        into one vector ``(..., P*width)``, ``"mean"`` averages over the points ``(..., width)``. Only
        ``"points"`` for other couplings.
    seed : int
    dtype : {numpy.float64, numpy.float32}
    backend : str
    checkpoint_every : int, optional
    **layer_options
        :class:`~kinn_ref.LayerSpec` options applied to every layer (``order``, ``coupling``, ...).

    Notes
    -----
    With grid coupling every layer's readout is regrouped per grid point, ``(B, [T,] P, width)``, so the
    next layer (and the head) sees one feature vector per point.
    """

    def __init__(self, input_dim, hidden_dims, output_dim, dt=0.1, n_steps=10, activation="relu", *,
                 head=False, pool="points", seed=0, dtype=np.float64, backend="numpy", checkpoint_every=None,
                 **layer_options):
        check_choice("activation", activation, ACTIVATIONS)
        check_positive_int("input_dim", input_dim)
        check_positive_int("output_dim", output_dim)
        check_seed("seed", seed)
        check_choice("pool", pool, POOLS)
        if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Iterable):
            raise ValueError(f"hidden_dims must be a sequence of ints, the nodes of each hidden layer (e.g. [8] "
                             f"or [] for none), got {hidden_dims!r}")
        hidden_dims = list(hidden_dims)
        for h in hidden_dims:
            check_positive_int("hidden_dims entries", h)
        rng = np.random.default_rng(seed)
        self.activation = activation
        self.output_dim = output_dim
        self.layers = []
        width = input_dim
        for n in hidden_dims + [output_dim]:
            layer = KINNLayer(width, n, seed=rng, dtype=dtype, backend=backend, checkpoint_every=checkpoint_every,
                              dt=dt, n_steps=n_steps, **layer_options)
            self.layers.append(layer)
            width = layer.spec.readout_width // layer.spec.n_points
        if pool != "points" and self.layers[-1].spec.coupling != "grid":
            raise ValueError(f"pool must be 'points' unless the coupling is 'grid', got {pool!r}")
        self.pool = pool
        if pool == "flatten":
            width *= self.layers[-1].spec.n_points
        self.head = Linear(width, output_dim, seed=rng, dtype=dtype) if head else None
        self._acts = []

    def __repr__(self):
        first = self.layers[0]
        head = f", head={self.head is not None}" + (f", pool={self.pool!r}" if self.pool != "points" else "")
        lines = [f"KINN(input_dim={first.spec.in_features}, hidden_dims={[l.spec.n_nodes for l in self.layers[:-1]]}, "
                 f"output_dim={self.output_dim}, activation={self.activation!r}{head}, dtype={first.dtype.name}, "
                 f"backend={first.backend!r}, parameters={sum(v.size for v in self.parameters().values())}"]
        lines += [f"  ({name}): {module!r}" for name, module in self.modules()]
        return "\n".join(lines) + "\n)"

    def modules(self):
        """``(name, module)`` pairs of the layers and head, in order."""
        named = [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]
        return named + ([("head", self.head)] if self.head is not None else [])

    def parameters(self):
        """Trainable arrays by flat name (``"layers.0.W"``, ``"head.b"``); the arrays are the live ones."""
        return {f"{m}.{k}": mod.params[k] for m, mod in self.modules() for k in mod.trainable}

    def gradients(self):
        """Gradients of the last :meth:`backward`, same names as :meth:`parameters`."""
        return {f"{m}.{k}": mod.grads[k] for m, mod in self.modules() for k in mod.trainable}

    def _to_points(self, layer, y):
        """Regroup a grid readout ``(..., m*P*H)`` per point ``(..., P, m*H)``."""
        s = layer.spec
        if s.coupling != "grid":
            return y
        m = s.readout_width // s.total_nodes
        lead = y.shape[:-1]
        z = y.reshape(lead + (m, s.n_points, s.n_nodes))
        return np.moveaxis(z, -3, -2).reshape(lead + (s.n_points, m * s.n_nodes))

    def _from_points(self, layer, dz):
        s = layer.spec
        if s.coupling != "grid":
            return dz
        m = s.readout_width // s.total_nodes
        lead = dz.shape[:-2]
        z = dz.reshape(lead + (s.n_points, m, s.n_nodes))
        return np.moveaxis(z, -2, -3).reshape(lead + (m * s.total_nodes,))

    def _pooled(self, z):
        """The last layer's per-point readout ``(..., P, width)`` pooled as ``self.pool`` says."""
        if self.pool == "flatten":
            return z.reshape(z.shape[:-2] + (-1,))
        return z.mean(axis=-2) if self.pool == "mean" else z

    def _unpooled(self, dy):
        """The gradient of :meth:`_pooled`, back to ``(..., P, width)``."""
        P = self.layers[-1].spec.n_points
        if self.pool == "flatten":
            return dy.reshape(dy.shape[:-1] + (P, -1))
        if self.pool == "mean":
            return np.repeat(dy[..., None, :] / P, P, axis=-2)
        return dy

    def forward(self, x):
        """Network output for ``x`` (the first layer's input layout)."""
        self._acts = []
        for i, layer in enumerate(self.layers):
            x = self._to_points(layer, layer.forward(x))
            if i < len(self.layers) - 1:
                x, vjp = activation(self.activation, x)
                self._acts.append(vjp)
        x = self._pooled(x)
        return self.head.forward(x) if self.head is not None else x

    __call__ = forward

    def backward(self, dy):
        """Gradients for the last forward pass (see :meth:`gradients`); returns ``dL/dx``."""
        if self.head is not None:
            dy = self.head.backward(dy)
        dy = self._unpooled(dy)
        for i in reversed(range(len(self.layers))):
            if i < len(self.layers) - 1:
                dy = self._acts[i](dy)
            layer = self.layers[i]
            dy = layer.backward(self._from_points(layer, dy))
        return dy
