"""Optimizers that update a flat dict of live parameter arrays in place.

``opt = Adam(model.parameters(), lr=1e-3)``; after each backward pass ``opt.step(model.gradients(), lr)``.
The state (moment estimates, step count) is exported by :meth:`Optimizer.state_dict` as arrays and plain
numbers so that a checkpoint restores it exactly.
"""
import numpy as np

from .._checks import check_choice, check_positive_float, check_real


class Optimizer:
    """Base class: holds the parameters, the hyperparameters and per-parameter state slots.

    Parameters
    ----------
    params : dict of str -> ndarray
        Live arrays, updated in place by :meth:`step`.
    lr : float
        Default learning rate (a schedule may pass another one to :meth:`step`).
    """

    kind = None
    slot_names = ()

    def __init__(self, params, lr):
        if not isinstance(params, dict) or not params:
            raise ValueError("params must be a non-empty dict of name -> ndarray (e.g. model.parameters())")
        self.params = params
        self.lr = check_positive_float("lr", lr)
        self.step_count = 0
        self.slots = {s: {k: np.zeros_like(v) for k, v in params.items()} for s in self.slot_names}

    def hyperparameters(self):
        """The constructor's keyword arguments (JSON-serialisable)."""
        return {"lr": self.lr}

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        size = sum(int(np.size(v)) for v in self.params.values())
        return (f"{type(self).__name__}(kind={self.kind!r}, {hyper}, parameters={len(self.params)} arrays "
                f"({size} values), step_count={self.step_count})")

    def step(self, grads, lr=None):
        """Update every parameter from ``grads`` (same keys as the parameters) with rate ``lr``."""
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"grads must hold a gradient for every parameter; missing {sorted(missing)}")
        lr = self.lr if lr is None else lr
        self.step_count += 1
        for name, p in self.params.items():
            self._update(name, p, grads[name], lr)

    def _update(self, name, p, g, lr):
        raise NotImplementedError

    def state_dict(self):
        """``{"kind", "hyperparameters", "step_count", "slots": {slot: {name: ndarray}}}``."""
        return {"kind": self.kind, "hyperparameters": self.hyperparameters(), "step_count": self.step_count,
                "slots": {s: {k: v.copy() for k, v in d.items()} for s, d in self.slots.items()}}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` output; the kind, parameter names and shapes must match."""
        if state.get("kind") != self.kind:
            raise ValueError(f"optimizer state is for {state.get('kind')!r}, this optimizer is {self.kind!r}")
        for s in self.slot_names:  # every check first: a refused state leaves this optimizer as it was
            saved = state["slots"].get(s, {})
            if set(saved) != set(self.params):
                raise ValueError(f"optimizer state slot {s!r} has parameters {sorted(saved)}, expected "
                                 f"{sorted(self.params)}")
            for k, v in saved.items():
                if v.shape != self.params[k].shape:
                    raise ValueError(f"optimizer state {s}[{k!r}] has shape {v.shape}, expected "
                                     f"{self.params[k].shape}")
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"optimizer state {s}[{k!r}] holds non-finite values")
        step_count = state["step_count"]
        if isinstance(step_count, bool) or not isinstance(step_count, (int, np.integer)) or step_count < 0:
            raise ValueError(f"optimizer state step_count must be an integer >= 0, got {step_count!r}")
        for s in self.slot_names:
            for k, v in state["slots"][s].items():
                self.slots[s][k][...] = v
        self.step_count = int(step_count)


class SGD(Optimizer):
    """SGD with (optionally Nesterov) momentum: ``m <- mu m + g``, ``p <- p - lr m``."""

    kind = "sgd"
    slot_names = ("momentum",)

    def __init__(self, params, lr=1e-2, momentum=0.9, nesterov=False):
        super().__init__(params, lr)
        self.momentum = check_real("momentum", momentum, 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, name, p, g, lr):
        m = self.slots["momentum"][name]
        m *= self.momentum
        m += g
        p -= lr * (g + self.momentum * m if self.nesterov else m)


class Adam(Optimizer):
    """Adam (Kingma and Ba): bias-corrected first and second moments; ``weight_decay`` adds ``wd * p`` to
    the gradient (L2 regularisation, coupled with the adaptive scaling)."""

    kind = "adam"
    slot_names = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = tuple(check_real(f"betas[{i}]", b, 0.0, 1.0, high_open=True) for i, b in enumerate(betas))
        self.eps = check_positive_float("eps", eps)
        self.weight_decay = check_real("weight_decay", weight_decay, 0.0)

    def hyperparameters(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _direction(self, name, g):
        """The bias-corrected Adam direction ``m_hat / (sqrt(v_hat) + eps)``."""
        b1, b2 = self.betas
        m, v = self.slots["m"][name], self.slots["v"][name]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        t = self.step_count
        return (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + self.eps)

    def _update(self, name, p, g, lr):
        if self.weight_decay:
            g = g + self.weight_decay * p
        p -= lr * self._direction(name, g)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter): ``p <- p - lr (adam + wd p)``.

    Parameters
    ----------
    exclude : sequence of str
        Parameter-name suffixes not decayed (e.g. ``("b", "leak")``).
    """

    kind = "adamw"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, exclude=()):
        super().__init__(params, lr, betas, eps, weight_decay)
        if isinstance(exclude, str) or not all(isinstance(e, str) for e in exclude):
            raise ValueError(f"exclude must be a sequence of parameter-name suffixes (str), got {exclude!r}")
        self.exclude = tuple(exclude)

    def hyperparameters(self):
        return dict(super().hyperparameters(), exclude=list(self.exclude))

    def _update(self, name, p, g, lr):
        d = self._direction(name, g)
        if self.weight_decay and not name.split(".")[-1] in self.exclude:
            d = d + self.weight_decay * p
        p -= lr * d


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(name, params, **hyperparameters):
    """Optimizer ``name`` (``"sgd"``, ``"adam"``, ``"adamw"``) over ``params``."""
    return OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))](params, **hyperparameters)
