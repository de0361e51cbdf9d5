"""Device-resident training: a whole step (forward, loss, backward, optimizer update) on the GPU.

Parameters, optimizer state, activations and the loss stay numba device arrays; nothing is copied to the
host (read ``loss.copy_to_host()`` when you want the number). Twins of :func:`kinn_ref.training.losses.mse`
and of :class:`kinn_ref.training.optimizers.SGD` / :class:`~kinn_ref.training.optimizers.Adam`.

Example
-------
>>> dparams = backend.to_device(kr.init_params(spec, dtype=np.float32))          # doctest: +SKIP
>>> opt = DeviceAdam(dparams, lr=1e-3)                                            # doctest: +SKIP
>>> loss = train_step(spec, dparams, dx, dtarget, opt)   # device array (1,)       # doctest: +SKIP
"""
import math

import numpy as np

from . import config
from .backend import run_backward, run_forward
from ..launch_warnings import quiet_launches
from .compat import cuda_module
from .device import empty, flat, is_device_array, kernel_cache, launch_1d, scalar, zeros

cuda = cuda_module()


@kernel_cache
def _loss_kernels(dtype):
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    zero = np.dtype(dtype).type(0.0)
    NT = config.FLAT_BLOCK

    @cuda.jit
    def residual(y, t, scale, dy, partial):
        """``dy = scale (y - t)``; each block's sum of ``(y - t)^2`` (tree in shared memory) into ``partial``."""
        red = cuda.shared.array(NT, nb)
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        acc = zero
        while i < y.shape[0]:
            r = y[i] - t[i]
            dy[i] = scale * r
            acc += r * r
            i += stride
        tid = cuda.threadIdx.x
        red[tid] = acc
        cuda.syncthreads()
        width = NT // 2
        while width > 0:
            if tid < width:
                red[tid] += red[tid + width]
            cuda.syncthreads()
            width //= 2
        if tid == 0:
            partial[cuda.blockIdx.x] = red[0]

    @cuda.jit
    def finish(partial, inv_size, loss):
        if cuda.grid(1) == 0:
            acc = zero
            for j in range(partial.shape[0]):
                acc += partial[j]
            loss[0] = acc * inv_size

    return residual, finish


@quiet_launches
def mse_loss(y, target):
    """Mean squared error on the device (twin of :func:`kinn_ref.training.losses.mse`).

    Parameters
    ----------
    y, target : device arrays of one shape and dtype

    Returns
    -------
    loss : device array (1,)
        ``mean((y - target)^2)``, reduced in a fixed order.
    dy : device array, shape of ``y``
        ``2 (y - target) / y.size``.
    """
    if not (is_device_array(y) and is_device_array(target)) or tuple(y.shape) != tuple(target.shape) \
            or y.dtype != target.dtype:
        raise ValueError(f"y and target must be device arrays of one shape and dtype, got {y.shape} and "
                         f"{target.shape}")
    residual, finish = _loss_kernels(y.dtype.str)
    NT = config.FLAT_BLOCK
    blocks = max(1, min(math.ceil(y.size / NT), 8 * NT))
    partial = empty((blocks,), y.dtype)
    dy = empty(y.shape, y.dtype)
    residual[blocks, NT](flat(y), flat(target), scalar(y.dtype, 2.0 / y.size), flat(dy), partial)
    loss = empty((1,), y.dtype)
    finish[1, 1](partial, scalar(y.dtype, 1.0 / y.size), loss)
    return loss, dy


@kernel_cache
def _update_kernels(dtype):
    one = np.dtype(dtype).type(1.0)

    @cuda.jit
    def sgd(p, g, m, lr, mu, nesterov):
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.shape[0]:
            mi = mu * m[i] + g[i]
            m[i] = mi
            p[i] -= lr * (g[i] + mu * mi if nesterov else mi)
            i += stride

    @cuda.jit
    def adam(p, g, m, v, lr, b1, b2, c1, c2, eps, wd):
        """``c1 = 1 - b1^t``, ``c2 = 1 - b2^t``; ``wd`` adds ``wd p`` to the gradient."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < p.shape[0]:
            gi = g[i] + wd * p[i]
            mi = b1 * m[i] + (one - b1) * gi
            vi = b2 * v[i] + (one - b2) * gi * gi
            m[i] = mi
            v[i] = vi
            p[i] -= lr * ((mi / c1) / (math.sqrt(vi / c2) + eps))
            i += stride

    return sgd, adam


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

    def hyperparameters(self):
        """The constructor's keyword arguments."""
        return {"lr": self.lr}

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        size = sum(int(v.size) for v in self.params.values())
        return (f"{type(self).__name__}({hyper}, parameters={len(self.params)} device arrays ({size} values), "
                f"step_count={self.step_count})")

    @quiet_launches
    def step(self, grads, lr=None):
        """Update every parameter in place from the device gradients ``grads`` (same keys)."""
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"grads must hold a gradient for every parameter; missing {sorted(missing)}")
        self.step_count += 1
        lr = self.lr if lr is None else lr
        for name, p in self.params.items():
            self._update(name, p, grads[name], lr)


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

    def _update(self, name, p, g, lr):
        sgd, _ = _update_kernels(p.dtype.str)
        f = lambda v: scalar(p.dtype, v)  # noqa: E731
        launch_1d(sgd, p.size, flat(p), flat(g), flat(self.slots["momentum"][name]), f(lr), f(self.momentum),
                  self.nesterov)


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

    def _update(self, name, p, g, lr):
        _, adam = _update_kernels(p.dtype.str)
        b1, b2 = self.betas
        t = self.step_count
        f = lambda v: scalar(p.dtype, v)  # noqa: E731
        launch_1d(adam, p.size, flat(p), flat(g), flat(self.slots["m"][name]), flat(self.slots["v"][name]), f(lr),
                  f(b1), f(b2), f(1 - b1 ** t), f(1 - b2 ** t), f(self.eps), f(self.weight_decay))


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
