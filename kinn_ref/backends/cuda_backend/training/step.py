"""Device-resident training: a whole step (forward, loss, backward, optimizer update) on the GPU.

Parameters, optimizer state, activations and the loss stay numba device arrays; nothing is copied to the
host (read ``loss.copy_to_host()`` when you want the number). The optimizers are twins of
:class:`kinn_ref.training.optimizers.SGD`, :class:`~kinn_ref.training.optimizers.Adam` and
:class:`~kinn_ref.training.optimizers.AdamW`; the losses are in :mod:`.training.losses`.

Each update reads a *gate* on the device, ``gate = (scale, apply)``: the gradients are multiplied by
``scale`` (the clipping factor of :mod:`.training.step_checks`, 1 when not clipping), and the update is skipped when
``apply`` is 0 (a non-finite loss or gradient), so a step can be refused without reading anything on the
host first.

Example
-------
>>> dparams = backend.to_device(kr.init_params(spec, dtype=np.float32))          # doctest: +SKIP
>>> opt = DeviceAdam(dparams, lr=1e-3)                                            # doctest: +SKIP
>>> loss = train_step(spec, dparams, dx, dtarget, opt)   # device array (1,)       # doctest: +SKIP
"""
from types import SimpleNamespace
import math

import numpy as np

from ...launch_warnings import quiet_launches
from ..backend import run_backward, run_forward
from ..runtime.compat import cuda_module
from ..runtime.device import empty, fill, flat, is_device_array, kernel_cache, launch_1d, scalar, zeros
from .losses import mse_loss

cuda = cuda_module()


@kernel_cache
def _update_kernels(dtype):
    one = np.dtype(dtype).type(1.0)
    zero = np.dtype(dtype).type(0.0)

    @cuda.jit
    def sgd(p, g, m, lr, mu, nesterov, gate):
        """``g <- gate[0] g`` (when ``gate[1]`` is not 0): ``m <- mu m + g``, ``p <- p - lr (m or g + mu m)``."""
        if gate[1] == zero:
            return
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.shape[0]:
            gi = g[i] * gate[0]
            mi = mu * m[i] + gi
            m[i] = mi
            p[i] -= lr * (gi + mu * mi if nesterov else mi)
            i += stride

    @cuda.jit
    def adam(p, g, m, v, lr, b1, b2, c1, c2, eps, wd, decoupled, gate):
        """``c1 = 1 - b1^t``, ``c2 = 1 - b2^t``; ``wd`` adds ``wd p`` to the gradient (Adam), ``decoupled``
        adds ``decoupled p`` to the direction (AdamW)."""
        if gate[1] == zero:
            return
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.shape[0]:
            gi = g[i] * gate[0] + wd * p[i]
            mi = b1 * m[i] + (one - b1) * gi
            vi = b2 * v[i] + (one - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= lr * ((mi / c1) / (math.sqrt(vi / c2) + eps) + decoupled * p[i])
            i += stride

    return SimpleNamespace(sgd=sgd, adam=adam)


def open_gate(dtype):
    """The gate ``(1, 1)``: every gradient as it is, the update applied."""
    return fill(empty((2,), dtype), 1.0)


class _DeviceOptimizer:
    """Holds device parameters (updated in place) and per-parameter device state."""

    slot_names = ()

    @quiet_launches
    def __init__(self, dparams, lr):
        if not isinstance(dparams, dict) or not dparams or not all(is_device_array(v) for v in dparams.values()):
            raise ValueError("dparams must be a non-empty dict of name -> device array")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        self.params, self.lr, self.step_count = dparams, float(lr), 0
        self.slots = {s: {k: zeros(v.shape, v.dtype) for k, v in dparams.items()} for s in self.slot_names}
        self._open_gate = open_gate(next(iter(dparams.values())).dtype)

    def hyperparameters(self):
        """The constructor's keyword arguments."""
        return {"lr": self.lr}

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        size = sum(int(v.size) for v in self.params.values())
        return (f"{type(self).__name__}({hyper}, parameters={len(self.params)} device arrays ({size} values), "
                f"step_count={self.step_count})")

    @quiet_launches
    def step(self, grads, lr=None, gate=None):
        """Update every parameter in place from the device gradients ``grads`` (same keys).

        Parameters
        ----------
        grads : dict of device arrays
        lr : float, optional
            The learning rate of this step (default: the constructor's).
        gate : device array (2,), optional
            ``(scale, apply)`` read on the device: the gradients are scaled by ``scale`` and the update is
            skipped where ``apply`` is 0 (see the module docstring). Default: ``(1, 1)``.
        """
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"grads must hold a gradient for every parameter; missing {sorted(missing)}")
        self.step_count += 1
        lr = self.lr if lr is None else lr
        gate = self._open_gate if gate is None else gate
        for name, p in self.params.items():
            self._update(name, p, grads[name], lr, gate)

    def load_host_state(self, optimizer):
        """Take the step count and state slots of the host optimizer ``optimizer`` (its twin, same parameter
        names): one copy to the device per slot array."""
        self.step_count = optimizer.step_count
        for slot in self.slot_names:
            for name, value in optimizer.slots[slot].items():
                self.slots[slot][name].copy_to_device(value)

    def copy_state_to(self, optimizer):
        """Write the step count and state slots into the host optimizer ``optimizer`` (one copy per array)."""
        optimizer.step_count = self.step_count
        for slot in self.slot_names:
            for name, value in optimizer.slots[slot].items():
                self.slots[slot][name].copy_to_host(value)


class DeviceSGD(_DeviceOptimizer):
    """SGD with momentum on the device (twin of :class:`kinn_ref.training.optimizers.SGD`)."""

    slot_names = ("momentum",)

    def __init__(self, dparams, lr=1e-2, momentum=0.9, nesterov=False):
        super().__init__(dparams, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, name, p, g, lr, gate):
        sgd = _update_kernels(p.dtype.str).sgd
        f = lambda v: scalar(p.dtype, v)  # noqa: E731
        launch_1d(sgd, p.size, flat(p), flat(g), flat(self.slots["momentum"][name]), f(lr), f(self.momentum),
                  self.nesterov, gate)


class DeviceAdam(_DeviceOptimizer):
    """Adam on the device (twin of :class:`kinn_ref.training.optimizers.Adam`)."""

    slot_names = ("m", "v")

    def __init__(self, dparams, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(dparams, lr)
        b1, b2 = betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not eps > 0 or weight_decay < 0:
            raise ValueError(f"eps must be > 0 and weight_decay >= 0, got {eps!r}, {weight_decay!r}")
        self.betas, self.eps, self.weight_decay = (float(b1), float(b2)), float(eps), float(weight_decay)

    def hyperparameters(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def _decay(self, name):
        """``(coupled, decoupled)`` weight decay of parameter ``name``."""
        return self.weight_decay, 0.0

    def _update(self, name, p, g, lr, gate):
        adam = _update_kernels(p.dtype.str).adam
        b1, b2 = self.betas
        t = self.step_count
        f = lambda v: scalar(p.dtype, v)  # noqa: E731
        coupled, decoupled = self._decay(name)
        launch_1d(adam, p.size, flat(p), flat(g), flat(self.slots["m"][name]), flat(self.slots["v"][name]), f(lr),
                  f(b1), f(b2), f(1 - b1 ** t), f(1 - b2 ** t), f(self.eps), f(coupled), f(decoupled), gate)


class DeviceAdamW(DeviceAdam):
    """Adam with decoupled weight decay on the device (twin of :class:`kinn_ref.training.optimizers.AdamW`).

    Parameters
    ----------
    exclude : sequence of str
        Parameter-name suffixes not decayed (the last part of a dotted name).
    """

    def __init__(self, dparams, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, exclude=()):
        super().__init__(dparams, lr, betas, eps, weight_decay)
        self.exclude = tuple(exclude)

    def hyperparameters(self):
        return dict(super().hyperparameters(), exclude=self.exclude)

    def _decay(self, name):
        decayed = self.weight_decay and name.split(".")[-1] not in self.exclude
        return 0.0, (self.weight_decay if decayed else 0.0)


#: Device twins of :data:`kinn_ref.training.optimizers.OPTIMIZERS`, by the host optimizers' ``kind``.
DEVICE_OPTIMIZERS = {"sgd": DeviceSGD, "adam": DeviceAdam, "adamw": DeviceAdamW}


def twin_optimizer(optimizer, dparams):
    """The device twin of the host optimizer ``optimizer`` over ``dparams`` (same names as its parameters),
    with its hyperparameters, step count and state."""
    hyper = dict(optimizer.hyperparameters())
    if "betas" in hyper:
        hyper["betas"] = tuple(hyper["betas"])
    device = DEVICE_OPTIMIZERS[optimizer.kind](dparams, **hyper)
    device.load_host_state(optimizer)
    return device


@quiet_launches
def train_step(spec, dparams, x, target, optimizer, V0=None, checkpoint_every=None):
    """One training step on the device: forward, MSE loss, backward, optimizer update (in place).

    Parameters
    ----------
    spec : LayerSpec
    dparams : dict of device arrays
        The parameters the optimizer updates.
    x, target : device arrays
        Input and target of the layer's output shape.
    optimizer : DeviceSGD or DeviceAdam
    V0 : device array, optional
    checkpoint_every : int, optional

    Returns
    -------
    device array (1,)
        The loss before the update.
    """
    # both passes run here, with nothing changing the arrays between them: the tape need not copy them
    y, tape = run_forward(spec, dparams, x, V0, checkpoint_every, own_inputs=False)
    loss, dy = mse_loss(y, target)
    grads = run_backward(spec, tape, dy)
    optimizer.step({k: grads[k] for k in dparams})
    return loss
