"""Models the trainer builds from a JSON-serialisable config: the KINN network and a plain MLP baseline.

``build_model(config)`` is the one place a config becomes a model, so a checkpoint (which stores the
config as JSON) can be checked against the model it is loaded into.

- ``{"model": "kinn", "input_dim", "hidden_dims", "output_dim", "dt", "n_steps", "activation", "head",
  "pool", "seed", "dtype", "init", "options": {LayerSpec options}}`` -> :class:`kinn_ref.network.KINN`, with
  ``init`` (optional) the initial circuit of every layer in place of :func:`~kinn_ref.init_params`'
  (``{"leak_conductance": g, "edge_conductance": grid edge conductance}``, each > 0);
- ``{"model": "mlp", "input_dim", "hidden_dims", "output_dim", "activation", "seed", "dtype"}``
  -> :class:`MLP`.
"""
import numpy as np

from .._checks import check_choice, check_positive_float, check_positive_int
from ..activations import ACTIVATIONS, activation
from ..network import KINN, Linear
from ..parameterization import softplus_inverse


class MLP:
    """Multi-layer perceptron: ``Linear -> activation -> ... -> Linear``, hand-derived gradients.

    Same module interface as :class:`~kinn_ref.network.KINN` (``modules``, ``parameters``, ``gradients``,
    ``forward``, ``backward``); the linear maps act on the last axis, so inputs ``(B, ..., input_dim)``
    work.

    Parameters
    ----------
    input_dim, output_dim : int
    hidden_dims : sequence of int
    activation : {"relu", "tanh", "sigmoid", "softplus", "identity"}
    seed : int
    dtype : {numpy.float64, numpy.float32}
    """

    def __init__(self, input_dim, hidden_dims, output_dim, activation="relu", *, seed=0, dtype=np.float64):
        check_choice("activation", activation, ACTIVATIONS)
        widths = [check_positive_int("input_dim", input_dim)]
        widths += [check_positive_int("hidden_dims entries", h) for h in hidden_dims]
        widths.append(check_positive_int("output_dim", output_dim))
        rng = np.random.default_rng(seed)
        self.activation = activation
        self.layers = [Linear(a, b, seed=rng, dtype=dtype) for a, b in zip(widths[:-1], widths[1:])]
        self._acts = []

    def modules(self):
        return [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]

    def parameters(self):
        """Trainable arrays by flat name (``"layers.0.W"``); the arrays are the live ones."""
        return {f"{m}.{k}": mod.params[k] for m, mod in self.modules() for k in mod.trainable}

    def gradients(self):
        return {f"{m}.{k}": mod.grads[k] for m, mod in self.modules() for k in mod.trainable}

    def forward(self, x):
        """Output ``(B, ..., output_dim)`` for ``x`` of shape ``(B, ..., input_dim)``."""
        self._acts = []
        for i, layer in enumerate(self.layers):
            x = layer.forward(x)
            if i < len(self.layers) - 1:
                x, vjp = activation(self.activation, x)
                self._acts.append(vjp)
        return x

    __call__ = forward

    def __repr__(self):
        widths = [self.layers[0].params["W"].shape[1]] + [layer.params["W"].shape[0] for layer in self.layers]
        dtype = self.layers[0].params["W"].dtype
        return f"MLP({'-'.join(map(str, widths))}, activation={self.activation!r}, dtype={dtype})"

    def backward(self, dy):
        """Gradients for the last forward pass (see :meth:`gradients`); returns ``dL/dx``."""
        for i in reversed(range(len(self.layers))):
            if i < len(self.layers) - 1:
                dy = self._acts[i](dy)
            dy = self.layers[i].backward(dy)
        return dy


_DTYPES = {"float64": np.float64, "float32": np.float32}
_KINN_KEYS = {"model", "input_dim", "hidden_dims", "output_dim", "dt", "n_steps", "activation", "head", "pool",
              "seed", "dtype", "init", "options"}
_MLP_KEYS = {"model", "input_dim", "hidden_dims", "output_dim", "activation", "seed", "dtype"}


def build_model(config, backend="numpy", checkpoint_every=None):
    """Build the model described by ``config`` (see the module docstring).

    Parameters
    ----------
    config : dict
    backend : str
        Backend of the KINN layers (``"numpy"``, ``"numba"``, ``"cuda"``, ``"auto"``).
    checkpoint_every : int, optional
        Memory option of the KINN layers' backward pass.

    Returns
    -------
    KINN or MLP
    """
    if not isinstance(config, dict) or config.get("model") not in ("kinn", "mlp"):
        raise ValueError(f"config must be a dict with 'model' in ['kinn', 'mlp'], got {config!r}")
    allowed = _KINN_KEYS if config["model"] == "kinn" else _MLP_KEYS
    unknown = set(config) - allowed
    if unknown:
        raise ValueError(f"config for model {config['model']!r} has unknown keys {sorted(unknown)}; "
                         f"allowed: {sorted(allowed)}")
    dtype = _DTYPES[check_choice("config['dtype']", config.get("dtype", "float64"), tuple(_DTYPES))]
    common = dict(activation=config.get("activation", "relu"), seed=config.get("seed", 0), dtype=dtype)
    if config["model"] == "mlp":
        return MLP(config["input_dim"], config.get("hidden_dims", []), config["output_dim"], **common)
    model = KINN(config["input_dim"], config.get("hidden_dims", []), config["output_dim"],
                 dt=config.get("dt", 0.1), n_steps=config.get("n_steps", 10), head=config.get("head", False),
                 pool=config.get("pool", "points"), backend=backend, checkpoint_every=checkpoint_every, **common,
                 **config.get("options", {}))
    _initial_circuit(model, config.get("init", {}))
    return model


#: ``init`` key -> (raw parameter it sets, couplings that have it; None: every coupling).
_INIT_KEYS = {"leak_conductance": ("g_raw", None), "edge_conductance": ("G_raw", ("grid",))}


def _initial_circuit(model, init):
    """Set every layer's initial conductances to ``init``'s values (see the module docstring)."""
    if not isinstance(init, dict) or set(init) - set(_INIT_KEYS):
        raise ValueError(f"config['init'] must be a dict with keys among {sorted(_INIT_KEYS)}, got {init!r}")
    for key, value in init.items():
        value = check_positive_float(f"config['init'][{key!r}]", value)
        name, couplings = _INIT_KEYS[key]
        if couplings is not None and any(layer.spec.coupling not in couplings for layer in model.layers):
            raise ValueError(f"config['init'][{key!r}] needs coupling in {list(couplings)} in every layer")
        for layer in model.layers:
            raw = softplus_inverse(value) if layer.spec.param == "positive" else value
            layer.params[name][...] = raw
