"""Layer and network objects, and the seed document's names."""
import subprocess
import sys

import numpy as np
import pytest

import kinn_ref as kr
from helpers import assert_close
from kinn_ref.layers import KINNLayer, KINNLayers
from kinn_ref.network import KINN


def seed_update(x, C, G, leak, dt, n_steps):
    """The seed document's layer, verbatim in NumPy."""
    v = np.zeros_like(x)
    for _ in range(n_steps):
        current_in = x + v @ G.T
        dvdt = (current_in - leak) / C
        v = v + dt * dvdt
    return v


def test_seed_layer_reproduces_seed_update():
    layer = KINNLayers(6, dt=0.05, seed=3)
    rng = np.random.default_rng(0)
    layer.capacitance = 0.5 + rng.random(6)
    layer.leak = rng.standard_normal(6)
    x = rng.standard_normal((4, 6))
    for n_steps in (1, 7, 10):
        expected = seed_update(x, layer.capacitance, layer.conductance, layer.leak, 0.05, n_steps)
        assert_close(layer.forward(x, n_steps), expected, rtol=1e-14, what=f"n_steps={n_steps}")
    assert layer.capacitance.shape == (6,) and layer.conductance.shape == (6, 6) and layer.leak.shape == (6,)
    assert np.array_equal(layer.capacitance, layer.params["C_raw"][0])


def test_seed_layer_default_call_and_gradients_of_seed_parameters():
    layer = KINNLayers(4, seed=0)
    x = np.random.default_rng(1).standard_normal((2, 4))
    y = layer(x)
    assert_close(y, seed_update(x, layer.capacitance, layer.conductance, layer.leak, 0.1, 10), rtol=1e-14)
    layer.backward(np.ones_like(y))
    assert set(layer.trainable) == {"C_raw", "G_raw", "leak"}
    assert layer.grads["G_raw"].shape == (1, 4, 4)


def test_seed_network_signature_reproduces_seed_stack_with_identity_projections():
    net = KINN(5, [5, 5], 5, 0.05, 6, coupling="dense", integrator="euler", param="raw", seed=2)
    seed_layers = []
    for layer in net.layers:
        layer.params["W"][:] = np.eye(5)
        layer.params["g_raw"][:] = 0.0
        seed_layers.append(layer.params)
    x = np.random.default_rng(0).standard_normal((3, 5))
    v = x
    for i, p in enumerate(seed_layers):
        v = seed_update(v, p["C_raw"][0], p["G_raw"][0], p["leak"][0], 0.05, 6)
        if i < len(seed_layers) - 1:
            v = np.maximum(v, 0)
    assert_close(net(x), v, rtol=1e-13)


def test_network_widths_chain_through_input_projections():
    net = KINN(3, [7, 4], 2, dt=0.1, n_steps=5)
    y = net(np.ones((6, 3)))
    assert y.shape == (6, 2)


def _network_fd_check(net, x, seed=0, eps=1e-6, rtol=1e-6):
    rng = np.random.default_rng(seed)
    y = net(x)
    w = rng.standard_normal(y.shape)
    dx = net.backward(w)
    grads = net.gradients()
    params = net.parameters()
    assert set(grads) == set(params)

    def loss():
        return float(np.sum(w * net(x)))

    for name, value in params.items():
        d = rng.standard_normal(value.shape)
        value += eps * d
        lp = loss()
        value -= 2 * eps * d
        lm = loss()
        value += eps * d
        fd = (lp - lm) / (2 * eps)
        an = float(np.sum(grads[name] * d))
        assert abs(fd - an) <= rtol * max(1.0, abs(fd)), (name, an, fd)
    d = rng.standard_normal(x.shape)
    fd = (np.sum(w * net(x + eps * d)) - np.sum(w * net(x - eps * d))) / (2 * eps)
    assert abs(fd - np.sum(dx * d)) <= rtol * max(1.0, abs(fd))


@pytest.mark.parametrize("options", [
    {"order": 2, "readout": "cells", "coupling": "kirchhoff", "activation": "tanh", "head": True},
    {"order": 2, "readout": "derivatives", "integrator": "rk4", "activation": "softplus"},
    {"coupling": "grid", "grid_shape": (6,), "boundary": "dirichlet", "readout": "cells", "order": 2,
     "head": True, "integrator": "implicit"},
])
def test_network_gradients_match_central_differences(options):
    grid = options.get("coupling") == "grid"
    net = KINN(2, [3], 2, dt=0.1, n_steps=4, seed=1, **options)
    shape = (3, 6, 2) if grid else (3, 2)
    _network_fd_check(net, np.random.default_rng(5).standard_normal(shape))


def test_network_on_sequences():
    net = KINN(2, [3], 2, dt=0.1, n_steps=4, order=2, return_sequences=True, activation="sigmoid", head=True)
    x = np.random.default_rng(5).standard_normal((3, 5, 2))
    assert net(x).shape == (3, 5, 2)
    _network_fd_check(net, x)


def test_layer_object_from_spec_and_backend_choice():
    spec = kr.LayerSpec(2, 3, order=2, coupling="dense")
    params = kr.init_params(spec, seed=4)
    layer = KINNLayer.from_spec(spec, params)
    x = np.ones((2, 2))
    y_fn, _ = kr.forward(spec, params, x)
    assert np.array_equal(layer(x), y_fn)
    dx = layer.backward(np.ones_like(y_fn))
    assert dx.shape == x.shape
    with pytest.raises(ValueError, match="backward needs a forward pass first"):
        KINNLayer(2, 3).backward(np.ones((1, 3)))
    with pytest.raises(ValueError, match="backend must be one of"):
        KINNLayer(2, 3, backend="jax")
    auto = KINNLayer(2, 3, backend="auto")
    assert auto.backend in kr.available_backends()


def test_network_rejects_bad_arguments():
    with pytest.raises(ValueError, match="activation must be one of"):
        KINN(2, [3], 1, activation="swish")
    with pytest.raises(ValueError, match="hidden_dims entries must be an integer >= 1"):
        KINN(2, [0], 1)
    with pytest.raises(ValueError, match="dt must be"):
        KINN(2, [3], 1, dt=0)


def test_import_does_not_load_sympy_or_matplotlib():
    code = ("import sys, kinn_ref, kinn_ref.network, kinn_ref.layers, kinn_ref.linear_analysis;"
            "bad = [m for m in ('sympy', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_linear_backward_reads_the_input_of_its_forward_pass():
    from kinn_ref.network import Linear
    layer = Linear(3, 2, seed=1)
    x = np.random.default_rng(0).standard_normal((4, 3))
    dy = np.ones((4, 2))
    layer.forward(x)
    layer.backward(dy)
    expected = layer.grads["W"].copy()
    layer.forward(x)
    x[:] = 0.0
    layer.backward(dy)
    np.testing.assert_array_equal(layer.grads["W"], expected)
