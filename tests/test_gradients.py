"""Hand-derived gradients against float64 central differences, over the whole option matrix."""
import numpy as np
import pytest

import kinn_ref as kr
from helpers import assert_close, make_case, option_matrix


def directional_check(spec, params, x, V0, seed=1, eps=1e-6, rtol=1e-6, checkpoint_every=None):
    """Compare ``<grad, d>`` with ``(L(p + eps d) - L(p - eps d)) / (2 eps)`` for each argument."""
    rng = np.random.default_rng(seed)
    y, tape = kr.forward(spec, params, x, V0, checkpoint_every=checkpoint_every)
    w = rng.standard_normal(y.shape)
    grads = kr.backward(spec, params, tape, w)
    assert set(grads) == set(params) | {"x"} | ({"V0"} if V0 is not None else set())
    args = dict(params, x=x, **({"V0": V0} if V0 is not None else {}))

    def loss(a):
        p = {k: a[k] for k in params}
        return float(np.sum(w * kr.forward(spec, p, a["x"], a.get("V0"))[0]))

    for name, value in args.items():
        d = rng.standard_normal(value.shape)
        if name == "beta":
            d[0] = 0.0  # row 0 is unused by definition
        plus, minus = dict(args), dict(args)
        plus[name], minus[name] = value + eps * d, value - eps * d
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        an = float(np.sum(grads[name] * d))
        assert abs(fd - an) <= rtol * max(1.0, abs(fd)), f"{name}: analytic {an!r} vs central {fd!r}"
    assert np.all(grads["beta"][0] == 0)
    return grads


@pytest.mark.parametrize("coupling,integrator,readout,param", option_matrix())
def test_gradient_matches_central_differences(coupling, integrator, readout, param):
    spec, params, x, V0 = make_case(coupling, integrator, readout, param)
    directional_check(spec, params, x, V0)


@pytest.mark.parametrize("coupling", ["dense", "kirchhoff", "grid1d-dirichlet", "none"])
@pytest.mark.parametrize("integrator", ["euler", "expeuler", "implicit", "rk4"])
def test_gradient_sequence_input_and_return_sequences(coupling, integrator):
    spec, params, x, V0 = make_case(coupling, integrator, "derivatives", sequence=True,
                                    return_sequences=True, n_steps=5, seed=3)
    directional_check(spec, params, x, V0)


@pytest.mark.parametrize("order", [1, 3])
def test_gradient_cascade_orders_without_V0(order):
    spec, params, x, _ = make_case("kirchhoff", "rk4", "derivatives", order=order, seed=4, with_V0=False)
    directional_check(spec, params, x, None)


@pytest.mark.parametrize("coupling,integrator", [("dense", "expeuler"), ("grid2d-neumann", "implicit"),
                                                 ("kirchhoff", "rk4"), ("none", "euler")])
@pytest.mark.parametrize("every", [1, 2, 3, 7])
def test_checkpointed_backward_equals_stored(coupling, integrator, every):
    spec, params, x, V0 = make_case(coupling, integrator, "cells", sequence=True, return_sequences=True,
                                    n_steps=7, seed=5)
    y, tape = kr.forward(spec, params, x, V0)
    y_c, tape_c = kr.forward(spec, params, x, V0, checkpoint_every=every)
    np.testing.assert_array_equal(y, y_c)
    assert len(tape_c.states) < len(tape.states) or every == 1
    w = np.random.default_rng(0).standard_normal(y.shape)
    g, g_c = kr.backward(spec, params, tape, w), kr.backward(spec, params, tape_c, w)
    for k in g:
        np.testing.assert_array_equal(g[k], g_c[k], err_msg=k)


def test_backward_twice_gives_same_result():
    spec, params, x, V0 = make_case("dense", "expeuler", "last")
    y, tape = kr.forward(spec, params, x, V0)
    g1 = kr.backward(spec, params, tape, np.ones_like(y))
    g2 = kr.backward(spec, params, tape, np.ones_like(y))
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


@pytest.mark.parametrize("integrator", ["euler", "expeuler", "implicit", "rk4"])
def test_float32_gradients_follow_float64(integrator):
    spec, p64, x64, V64 = make_case("kirchhoff", integrator, "derivatives")
    p32 = {k: v.astype(np.float32) for k, v in p64.items()}
    y64, t64 = kr.forward(spec, p64, x64, V64)
    y32, t32 = kr.forward(spec, p32, x64.astype(np.float32), V64.astype(np.float32))
    assert y32.dtype == np.float32
    assert_close(y32, y64, rtol=1e-5, what="y")
    w = np.random.default_rng(0).standard_normal(y64.shape)
    g64 = kr.backward(spec, p64, t64, w)
    g32 = kr.backward(spec, p32, t32, w.astype(np.float32))
    for k in g64:
        assert g32[k].dtype == np.float32
        assert_close(g32[k], g64[k], rtol=1e-4, what=k)
