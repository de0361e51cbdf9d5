"""The device twins of a training step's host pieces (activations, losses, the linear layer).

In CI the kernels run on numba's CUDA simulator (``tests/conftest.py``) on tiny sizes.
"""
import numpy as np
import pytest

import kinn_ref as kr
from helpers import rel_error

pytestmark = pytest.mark.skipif("cuda" not in kr.available_backends(),
                                reason="cuda backend not usable here (no GPU, no simulator)")

TOLERANCE = {np.dtype(np.float64): 1e-11, np.dtype(np.float32): 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_device_twins_match_host(dtype):
    """Activations, losses and the linear layer on the device against their host twins."""
    from kinn_ref.activations import activation
    from kinn_ref.backends.cuda_backend import activations, linear, losses as device_losses
    from kinn_ref.backends.cuda_backend.backend import upload
    from kinn_ref.network import Linear
    from kinn_ref.training import losses
    tol = TOLERANCE[np.dtype(dtype)]
    rng = np.random.default_rng(4)
    z = (3 * rng.standard_normal((3, 5))).astype(dtype)
    z[0, 0] = 0.0
    dy = rng.standard_normal(z.shape).astype(dtype)
    for name in ("relu", "tanh", "sigmoid", "softplus", "identity"):
        value, vjp = activation(name, z)
        out = activations.activation(name, upload(z))
        assert rel_error(out.copy_to_host(), value) <= tol, name
        dz = activations.activation_vjp(name, upload(z), out, upload(dy)).copy_to_host()
        assert dz.dtype == dtype and rel_error(dz, vjp(dy)) <= tol, name
    t = rng.standard_normal(z.shape).astype(dtype)
    t[1] = z[1]                                   # a row with zero residual: relative_l2's subgradient 0
    labels = rng.integers(0, 5, 3)
    for name, target, device_target in [("mse", t, upload(t)), ("relative_l2", t, upload(t)),
                                        ("cross_entropy", labels, upload(labels))]:
        value, d = losses.LOSSES[name](z, target)
        loss, d_dev = device_losses.DEVICE_LOSSES[name](upload(z), device_target)
        assert abs(loss.copy_to_host()[0] - value) <= tol * abs(value), name
        assert d_dev.dtype == dtype and rel_error(d_dev.copy_to_host(), d) <= tol, name
    layer = Linear(5, 2, seed=0, dtype=dtype)
    layer.params["b"] = rng.standard_normal(2).astype(dtype)
    x = rng.standard_normal((3, 2, 5)).astype(dtype)
    dy2 = rng.standard_normal((3, 2, 2)).astype(dtype)
    W, b = upload(layer.params["W"]), upload(layer.params["b"])
    assert rel_error(linear.linear_forward(upload(x), W, b).copy_to_host(), layer.forward(x)) <= tol
    dx = layer.backward(dy2)
    dW, db, dx_dev = linear.linear_backward(upload(x), W, upload(dy2))
    for got, want in ((dW, layer.grads["W"]), (db, layer.grads["b"]), (dx_dev, dx)):
        assert rel_error(got.copy_to_host(), want) <= tol

