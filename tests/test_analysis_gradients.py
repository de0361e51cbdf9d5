"""Symbolic gradients of the discrete map (SymPy) as an independent oracle for the hand-derived backward
pass of every backend, and for the complex-step gradients of the golden generator."""
import numpy as np
import pytest

import kinn_ref as kr
from kinn_ref.analysis.golden_generate import golden_values
from kinn_ref.analysis.symbolic_gradients import symbolic_gradients
from helpers import make_case, rel_error

# (coupling, integrator, readout, param, order, nodes, steps, sequence, return_sequences)
FAST = [
    ("none", "euler", "derivatives", "raw", 2, 2, 4, False, False),
    ("dense", "rk4", "last", "positive", 1, 2, 2, False, False),
    ("kirchhoff", "expeuler", "cells", "positive", 2, 2, 3, False, False),
    ("grid1d-dirichlet", "implicit", "last", "raw", 1, 1, 3, False, False),
    ("dense", "euler", "cells", "raw", 2, 2, 3, True, True),
    ("none", "implicit", "derivatives", "positive", 2, 1, 2, True, False),
]
SLOW = [
    ("dense", "rk4", "derivatives", "positive", 2, 2, 3, False, False),
    ("kirchhoff", "implicit", "derivatives", "raw", 2, 3, 3, True, True),
    ("grid1d-periodic", "expeuler", "derivatives", "positive", 2, 1, 4, True, False),
    ("dense", "expeuler", "last", "raw", 2, 3, 4, False, False),
]


def _case(coupling, integrator, readout, param, order, nodes, steps, sequence, return_sequences):
    spec, params, x, V0 = make_case(coupling, integrator, readout, param, order=order, n_nodes=nodes,
                                    n_steps=steps, batch=1, in_features=1, sequence=sequence,
                                    return_sequences=return_sequences, seed=5)
    y, _ = kr.forward(spec, params, x, V0)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    return spec, params, x, V0, dy


def _check_backends(spec, params, x, V0, dy, oracle):
    for backend in kr.available_backends():
        y, tape = kr.forward(spec, params, x, V0, backend=backend)
        grads = kr.backward(spec, params, tape, dy)
        assert set(grads) == set(oracle)
        for k, expected in oracle.items():
            err = rel_error(grads[k], expected) if np.any(expected) else np.abs(grads[k]).max()
            assert err <= 1e-12, f"{backend} {k}: {err:.2e}"


@pytest.mark.parametrize("case", FAST + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW],
                         ids=lambda c: "-".join(map(str, c)))
def test_backward_matches_symbolic_gradients(case):
    spec, params, x, V0, dy = _case(*case)
    oracle = symbolic_gradients(spec, params, x, V0, dy)
    assert np.all(oracle["beta"][0] == 0)                     # beta_1 is unused, symbolically
    _check_backends(spec, params, x, V0, dy, oracle)


def test_complex_step_golden_gradients_match_symbolic_gradients():
    spec, params, x, V0, dy = _case("kirchhoff", "rk4", "derivatives", "positive", 1, 2, 2, False, False)
    _, golden = golden_values(spec, params, x, V0, dy)
    oracle = symbolic_gradients(spec, params, x, V0, dy)
    for k in oracle:
        np.testing.assert_allclose(golden[k], oracle[k], rtol=1e-14, atol=1e-15, err_msg=k)
