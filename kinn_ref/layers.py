"""Layer objects: thin stateful wrappers over the functional contract."""
import numpy as np

from ._checks import check_seed
from .backends import resolve
from .functional import backward, forward
from .parameterization import init_params
from .spec import LayerSpec


class KINNLayer:
    """One KINN layer holding its spec, parameters and last tape.

    Parameters
    ----------
    in_features, n_nodes : int
        See :class:`~kinn_ref.LayerSpec`.
    seed : int or numpy.random.Generator
        Seed of :func:`~kinn_ref.init_params`.
    dtype : {numpy.float64, numpy.float32}
    backend : str
        ``"numpy"``, ``"numba"``, ``"cuda"`` or ``"auto"``.
    checkpoint_every : int, optional
        Memory option of the backward pass.
    params : dict of ndarray, optional
        Initial parameters (copied); drawn from ``seed`` when omitted.
    **options
        Remaining :class:`~kinn_ref.LayerSpec` fields (``order``, ``coupling``, ``integrator``, ...).

    Attributes
    ----------
    params : dict of ndarray
        Current raw parameters (updated in place by optimizers).
    grads : dict of ndarray
        Gradients from the last :meth:`backward`.
    trainable : tuple of str
        Names of the parameters an optimizer updates.
    """

    def __init__(self, in_features, n_nodes, *, seed=0, dtype=np.float64, backend="numpy",
                 checkpoint_every=None, params=None, **options):
        self.spec = LayerSpec(in_features, n_nodes, **options)
        self.backend = resolve(backend, self.spec)
        self.checkpoint_every = checkpoint_every
        self.params = init_params(self.spec, seed=seed, dtype=dtype) if params is None else \
            {k: np.array(v) for k, v in params.items()}
        self.trainable = tuple(self.params)
        self.grads = None
        self._tape = None

    def n_parameters(self):
        """Number of trainable values (the sizes of the :attr:`trainable` arrays)."""
        return int(sum(self.params[k].size for k in self.trainable))

    def __repr__(self):
        extra = "" if self.checkpoint_every is None else f", checkpoint_every={self.checkpoint_every}"
        return (f"{type(self).__name__}(<{self.spec.summary()}>, dtype={self.dtype.name}, "
                f"backend={self.backend!r}, parameters={self.n_parameters()}{extra})")

    @classmethod
    def from_spec(cls, spec, params, **kwargs):
        """A layer for an existing ``spec`` and ``params``."""
        fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
        return cls(fields.pop("in_features"), fields.pop("n_nodes"), params=params, **fields, **kwargs)

    @property
    def dtype(self):
        return self.params["W"].dtype

    def forward(self, x, V0=None):
        """Output of the layer for ``x``; keeps the tape for :meth:`backward`."""
        y, self._tape = forward(self.spec, self.params, x, V0, backend=self.backend,
                                checkpoint_every=self.checkpoint_every)
        return y

    __call__ = forward

    def backward(self, dy):
        """Gradients for the last forward pass; stores them in :attr:`grads` and returns ``dL/dx``."""
        if self._tape is None:
            raise ValueError("backward needs a forward pass first")
        self.grads = backward(self.spec, self.params, self._tape, dy)
        return self.grads["x"]


class KINNLayers(KINNLayer):
    """The seed document's layer: ``v <- v + dt (x + v G^T - leak) / C`` for ``n_steps`` steps.

    Explicit Euler, dense coupling, raw parameters, no leak conductance, identity input projection.
    ``capacitance`` starts at ones, ``conductance`` at a standard normal matrix, ``leak`` at zeros.

    Parameters
    ----------
    n_nodes : int
    dt : float
    seed : int, optional
        Seed of the standard normal ``conductance``.
    """

    def __init__(self, n_nodes, dt=0.1, *, seed=None, dtype=np.float64, backend="numpy"):
        dtype = np.dtype(dtype)
        rng = np.random.default_rng(check_seed("seed", seed))
        params = {"W": np.eye(n_nodes, dtype=dtype), "b": np.zeros(n_nodes, dtype),
                  "C_raw": np.ones((1, n_nodes), dtype), "g_raw": np.zeros((1, n_nodes), dtype),
                  "leak": np.zeros((1, n_nodes), dtype), "beta": np.ones((1, n_nodes), dtype),
                  "G_raw": rng.standard_normal((1, n_nodes, n_nodes)).astype(dtype)}
        super().__init__(n_nodes, n_nodes, params=params, backend=backend, coupling="dense",
                         integrator="euler", param="raw", dt=dt, n_steps=10)
        self.trainable = ("C_raw", "G_raw", "leak")
        self.n_nodes, self.dt = n_nodes, float(dt)

    capacitance = property(lambda self: self.params["C_raw"][0],
                           lambda self, v: self.params["C_raw"][0].__setitem__(Ellipsis, v),
                           doc="Node capacitances ``C``, shape (n_nodes,).")
    conductance = property(lambda self: self.params["G_raw"][0],
                           lambda self, v: self.params["G_raw"][0].__setitem__(Ellipsis, v),
                           doc="Coupling matrix ``G``, shape (n_nodes, n_nodes).")
    leak = property(lambda self: self.params["leak"][0],
                    lambda self, v: self.params["leak"][0].__setitem__(Ellipsis, v),
                    doc="Leak currents, shape (n_nodes,).")

    def __repr__(self):
        return (f"KINNLayers(n_nodes={self.n_nodes}, dt={self.dt:g}, n_steps={self.spec.n_steps}, "
                f"dtype={self.dtype.name}, backend={self.backend!r}, parameters={self.n_parameters()})")

    def forward(self, x, n_steps=10):
        """Final state after ``n_steps`` Euler steps from zero, for ``x`` of shape (batch, n_nodes)."""
        if self.spec.n_steps != n_steps:
            self.spec = self.spec.replace(n_steps=n_steps)
        return super().forward(x)

    __call__ = forward

