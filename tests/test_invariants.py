"""Physical and numerical invariants of the reference: conservation, closed forms, stability, order."""
import numpy as np
import pytest

import kinn_ref as kr
from helpers import COUPLING_CASES, assert_close, make_case, random_params
from kinn_ref.coupling import make_coupling
from kinn_ref.integrators import INTEGRATORS
from kinn_ref.linear_analysis import exact_states
from kinn_ref.parameterization import make_circuit, softplus_inverse


@pytest.mark.parametrize("param", ["positive", "raw"])
def test_kirchhoff_currents_sum_to_zero(param):
    spec, params, _, _ = make_case("kirchhoff", param=param, n_nodes=6)
    coupling = make_coupling(spec, make_circuit(spec, params))
    V = np.random.default_rng(1).standard_normal((5, spec.total_nodes))
    for k in range(spec.order):
        currents = coupling.apply(k, V)
        assert np.abs(currents.sum(axis=1)).max() <= 1e-14 * np.abs(currents).sum()
        S = coupling.A[k]
        assert np.allclose(S, S.T) and np.all(np.diag(S) == 0)


@pytest.mark.parametrize("case", ["grid1d-periodic", "grid1d-neumann", "grid2d-neumann", "grid2d-periodic"])
def test_grid_conserves_charge_without_grounding(case):
    spec, params, _, _ = make_case(case, n_nodes=2)
    coupling = make_coupling(spec, make_circuit(spec, params))
    V = np.random.default_rng(2).standard_normal((4, spec.total_nodes))
    per_channel = coupling.apply(0, V).reshape(4, spec.n_points, spec.n_nodes).sum(axis=1)
    assert np.abs(per_channel).max() <= 1e-13


def test_grid_stencil_matches_sparse_laplacian():
    """The stencil, the sparse ``L0`` of the implicit solves and the neighbour-list ``L0`` of the analysis
    agree, on grids with axes of one and two points too."""
    from kinn_ref.analysis.discrete_map import grid_laplacian
    from kinn_ref.coupling import unit_laplacian_sparse
    for boundary in ("periodic", "neumann", "dirichlet"):
        for shape in ((6,), (3, 5), (1,), (2,), (1, 4), (4, 1), (1, 1), (2, 2)):
            spec, params, _, _ = make_case("grid1d-periodic", n_nodes=2)
            spec = spec.replace(grid_shape=shape, boundary=boundary)
            params = random_params(spec, np.random.default_rng(0))
            coupling = make_coupling(spec, make_circuit(spec, params))
            V = np.random.default_rng(3).standard_normal((2, spec.total_nodes))
            L0 = unit_laplacian_sparse(shape, boundary).toarray()
            np.testing.assert_array_equal(L0, grid_laplacian(shape, boundary), err_msg=f"{boundary} {shape}")
            U = V.reshape(2, -1, 2)
            expected = np.einsum("pq,bqh->bph", L0, U) * coupling.A[0]
            assert_close(coupling.apply(0, V), expected.reshape(2, -1), what=f"{boundary} {shape}")
            assert_close(coupling.diag(0), (np.diag(L0)[:, None] * coupling.A[0]).reshape(-1))


@pytest.mark.parametrize("param", ["positive", "raw"])
def test_expeuler_uncoupled_matches_closed_form(param):
    """One RC cell with constant input: V(t) = V_inf + (V0 - V_inf) exp(-g t / C), to rounding."""
    spec = kr.LayerSpec(2, 5, coupling="none", integrator="expeuler", dt=0.37, n_steps=13, param=param,
                        return_sequences=True)
    rng = np.random.default_rng(0)
    params = random_params(spec, rng)
    x, V0 = rng.standard_normal((3, 2)), rng.standard_normal((3, 1, 5))
    y, _ = kr.forward(spec, params, x, V0)
    circuit = make_circuit(spec, params)
    C, g, leak = circuit.C[0], circuit.g[0], circuit.leak[0]
    I = x @ params["W"].T + params["b"]
    V_inf = (I - leak) / g
    t = spec.dt * np.arange(1, 14)[None, :, None]
    exact = V_inf[:, None] + (V0[:, 0][:, None] - V_inf[:, None]) * np.exp(-g * t / C)
    assert np.max(np.abs(y - exact)) <= 50 * np.finfo(float).eps * np.max(np.abs(exact))


@pytest.mark.parametrize("integrator", ["expeuler", "implicit"])
@pytest.mark.parametrize("coupling", ["none", "kirchhoff", "grid1d-dirichlet", "grid2d-neumann"])
def test_passive_cells_stay_bounded_for_any_dt(integrator, coupling):
    """Zero input and leak, g > 0: the infinity norm never grows (contraction), whatever dt."""
    for dt in (1e-3, 0.5, 10.0, 1e3, 1e6):
        spec, params, x, V0 = make_case(coupling, integrator, "last", order=1, dt=dt, n_steps=50, seed=7)
        params["leak"][:] = 0
        params["W"][:] = 0
        params["b"][:] = 0
        if spec.param == "positive" and coupling == "kirchhoff":
            params["G_raw"] = params["G_raw"] + 3.0  # strong coupling
        spec = spec.replace(return_sequences=True)
        y, _ = kr.forward(spec, params, x, V0)
        norms = np.abs(y).max(axis=(0, 2))
        assert norms[0] <= np.abs(V0).max() * (1 + 1e-12)
        assert np.all(np.diff(norms) <= 1e-12 * norms[0]), f"dt={dt}"


@pytest.mark.parametrize("integrator", ["expeuler", "implicit"])
def test_passive_cascade_stays_bounded_for_any_dt(integrator):
    for dt in (0.1, 10.0, 1e4):
        spec, params, x, V0 = make_case("kirchhoff", integrator, "cells", order=3, dt=dt, n_steps=200)
        y, _ = kr.forward(spec, params, x, V0)
        assert np.all(np.isfinite(y)) and np.abs(y).max() < 1e3


@pytest.mark.parametrize("coupling", ["dense", "kirchhoff", "grid1d-periodic"])
@pytest.mark.parametrize("integrator", kr.spec.INTEGRATORS)
def test_convergence_order_against_matrix_exponential(integrator, coupling):
    """Log-log slope of the error at t = 1 against dt matches the integrator's order."""
    errors, dts = [], []
    for n in (16, 32, 64, 128):
        spec, params, x, V0 = make_case(coupling, integrator, "cells", order=2, dt=1.0 / n, n_steps=n, seed=11)
        y, _ = kr.forward(spec, params, x, V0)
        exact = exact_states(spec, params, x, V0, [1.0])[0].reshape(y.shape)
        errors.append(np.linalg.norm(y - exact) / np.linalg.norm(exact))
        dts.append(1.0 / n)
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert abs(slope - INTEGRATORS[integrator].order) < 0.15, (slope, errors)


def test_derivatives_readout_matches_jacobian_powers():
    from kinn_ref.linear_analysis import forcing, jacobian_matrix
    spec, params, x, V0 = make_case("dense", "rk4", "derivatives", order=3, n_steps=3)
    y, tape = kr.forward(spec, params, x, V0)
    Y = tape.states[spec.n_steps].reshape(x.shape[0], -1)
    J = jacobian_matrix(spec, params)
    I = x @ params["W"].T + params["b"]
    Z = Y @ J.T + forcing(spec, params, I)
    N, K = spec.total_nodes, spec.order
    blocks = [Y[:, (K - 1) * N:]]
    for _ in range(K):
        blocks.append(Z[:, (K - 1) * N:])
        Z = Z @ J.T
    assert_close(y, np.concatenate(blocks, axis=1))


def test_float32_forward_follows_float64_everywhere():
    for case in COUPLING_CASES:
        for integrator in ("euler", "expeuler", "implicit", "rk4"):
            spec, p, x, V0 = make_case(case, integrator, "derivatives")
            y64, _ = kr.forward(spec, p, x, V0)
            p32 = {k: v.astype(np.float32) for k, v in p.items()}
            y32, _ = kr.forward(spec, p32, x.astype(np.float32), V0.astype(np.float32))
            assert y32.dtype == np.float32
            assert_close(y32, y64, dtype=np.float32, what=f"{case} {integrator}")


def test_positive_parameterization_keeps_capacitance_above_c_min():
    spec = kr.LayerSpec(2, 3, c_min=0.05)
    params = kr.init_params(spec)
    params["C_raw"][:] = -800.0
    params["g_raw"][:] = 800.0
    circuit = make_circuit(spec, params)
    assert np.all(circuit.C >= 0.05) and np.all(np.isfinite(circuit.g))
    assert np.allclose(make_circuit(spec, kr.init_params(spec)).C, 1.0)
    assert np.allclose(softplus_inverse(np.array([1e-3, 1.0, 50.0])),
                       np.log(np.expm1(np.array([1e-3, 1.0, 50.0]))))


@pytest.mark.parametrize("param", ["positive", "raw"])
@pytest.mark.parametrize("coupling", sorted(COUPLING_CASES))
def test_init_params_arrays_are_independent(param, coupling):
    spec = kr.LayerSpec(2, 3, order=2, param=param, **COUPLING_CASES[coupling])
    params = kr.init_params(spec, seed=0)
    arrays = list(params.values())
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            assert not np.shares_memory(a, b)
