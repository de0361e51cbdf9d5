"""Higher-order analysis: the cascade's transfer function, ODE and analytic responses; the derivatives readout
against exact derivatives; numerical trajectories against the analytic response at each integrator's order."""
import numpy as np
import pytest
import sympy

import kinn_ref as kr
from kinn_ref.analysis.higher_order import (cascade_ode, cascade_response, characteristic_polynomial,
                                   convergence_errors, exact_derivatives, impulse_response, inverse_laplace,
                                   stacked_system, step_response, transfer_function,
                                   uncoupled_cascade_layer)
from helpers import INTEGRATOR_ORDERS, make_case
from kinn_ref.backends import implemented_integrators

C = sympy.symbols("C1:4", positive=True)
g = sympy.symbols("g1:4", positive=True)
beta = sympy.symbols("beta1:4")


@pytest.mark.parametrize("K", [1, 2, 3])
def test_transfer_function_is_the_product_of_cells(K):
    H, s = transfer_function(C[:K], g[:K], beta[:K])
    expected = sympy.prod(beta[1:K]) / sympy.prod([C[k] * s + g[k] for k in range(K)])
    assert sympy.simplify(H - expected) == 0
    p = characteristic_polynomial(C[:K], g[:K], beta[:K])
    assert p.degree() == K
    assert sympy.expand(p.as_expr() - sympy.prod([C[k] * s + g[k] for k in range(K)])) == 0


def _satisfies_ode(Cs, gs, bs, y, t, u):
    ode, tt = cascade_ode(Cs, gs, bs)
    f = sympy.Function("y")(tt)
    lhs = ode.lhs.subs({f.diff(tt, j): y.subs(t, tt).diff(tt, j) for j in range(len(Cs), 0, -1)})
    lhs = lhs.subs(f, y.subs(t, tt))
    rhs = ode.rhs.subs(sympy.Function("u")(tt), u)
    return sympy.simplify(lhs - rhs) == 0


@pytest.mark.parametrize("Cs,gs,bs", [
    ((C[0], C[1]), (g[0], g[1]), (1, beta[1])),                             # distinct poles (symbolic)
    ((1, 2, sympy.Rational(1, 2)), (3, 1, 2), (1, 2, sympy.Rational(3, 2))),  # three distinct poles
    ((1, 1), (2, 2), (1, 3)),                                               # a double pole
    ((2, 2, 2), (1, 1, 1), (1, 1, 1)),                                      # a triple pole
])
def test_step_and_impulse_responses_solve_the_ode(Cs, gs, bs):
    y, t = step_response(Cs, gs, bs)
    assert _satisfies_ode(Cs, gs, bs, y, t, 1)
    K = len(Cs)
    for m in range(K):                                                      # starts at rest
        assert sympy.simplify(y.diff(t, m).subs(t, 0)) == 0
    h, th = impulse_response(Cs, gs, bs)
    assert sympy.simplify(h.subs(th, t) - y.diff(t)) == 0


def test_repeated_pole_response_has_the_secular_term():
    y, t = step_response((1, 1), (2, 2), (1, 3))
    expected = sympy.Rational(3, 4) - sympy.Rational(3, 4) * sympy.exp(-2 * t) - sympy.Rational(3, 2) * t * \
        sympy.exp(-2 * t)
    assert sympy.simplify(y - expected) == 0


def test_inverse_laplace_agrees_with_sympy():
    s, t = sympy.symbols("s t", positive=True)
    F = 3 / ((s + 1) * (2 * s + 3) ** 2 * s)
    assert sympy.simplify(inverse_laplace(F, s, t) - sympy.inverse_laplace_transform(F, s, t)) == 0
    with pytest.raises(ValueError, match="strictly proper"):
        inverse_laplace(s / (s + 1), s, t)


def _trajectory_error(integrator, backend, dt, t_end=0.5):
    """Largest error of V_K along the trajectory against the analytic response, at the times k * 0.05."""
    Cs, gs, bs, leak = [1.3, 0.6], [0.9, 1.7], [1.0, 1.4], [0.2, -0.1]
    current, T = 0.8, int(round(t_end / dt))
    spec, params, x = uncoupled_cascade_layer(Cs, gs, bs, leak, current, integrator, dt, T)
    y, _ = kr.forward(spec.replace(return_sequences=True), params, x, backend=backend)
    exact, t = cascade_response(Cs, gs, bs, current, leak=leak)
    every = int(round(0.05 / dt))
    times = dt * np.arange(every, T + 1, every)
    reference = np.array([float(exact.subs(t, sympy.Rational(v)).evalf(20)) for v in times])
    return np.max(np.abs(y[0, every - 1::every, 0] - reference)) / np.max(np.abs(reference))


@pytest.mark.parametrize("integrator,order,backend", [(i, o, b) for b in kr.available_backends()
                                                       for i, o in INTEGRATOR_ORDERS
                                                       if i in implemented_integrators(b)])
def test_trajectory_follows_the_analytic_response_at_the_integrators_order(integrator, order, backend):
    coarse, fine = (_trajectory_error(integrator, backend, dt) for dt in (0.05, 0.025))
    assert coarse < 0.05 and 2 ** order * 0.8 < coarse / fine < 2 ** order * 1.25, (coarse, fine)


@pytest.mark.parametrize("integrator,order", INTEGRATOR_ORDERS)
@pytest.mark.parametrize("poles", ["distinct", "repeated"])
def test_measured_order_against_the_analytic_response(integrator, order, poles):
    Cs, gs = ([1.0, 0.5], [1.0, 2.0]) if poles == "distinct" else ([1.0, 0.5], [1.0, 0.5])
    _, errors, slope = convergence_errors(integrator, Cs, gs, [1.0, 1.5], [0.1, 0.2], 0.7)
    assert abs(slope - order) < 0.25, (errors, slope)


def _state_after(spec, params, x, V0):
    y, _ = kr.forward(spec.replace(readout="cells"), params, x, V0)
    return y.reshape(x.shape[0], spec.order, spec.total_nodes)


@pytest.mark.parametrize("coupling,order,nodes,grid", [
    ("none", 3, 2, None), ("dense", 2, 3, None), ("kirchhoff", 3, 3, None), ("grid1d-dirichlet", 2, 2, None),
    ("grid2d-neumann", 2, 1, (2, 2)), ("grid2d-periodic", 3, 1, (3, 2)), ("grid1d-periodic", 2, 1, None),
    ("none", 1, 2, None),
    pytest.param("grid2d-neumann", 3, 1, None, marks=pytest.mark.slow)])
def test_derivatives_readout_equals_exact_derivatives(coupling, order, nodes, grid):
    spec, params, x, V0 = make_case(coupling, "rk4", "derivatives", order=order, n_nodes=nodes, batch=1)
    if grid is not None:
        spec = spec.replace(grid_shape=grid)
        rng = np.random.default_rng(0)
        x, V0 = rng.standard_normal(spec.input_shape(1)), rng.standard_normal((1, order, spec.total_nodes))
    y, _ = kr.forward(spec, params, x, V0)
    Y = _state_after(spec, params, x, V0)[0]
    I = (x @ params["W"].T + params["b"]).reshape(-1)
    Cs, A, b = stacked_system(spec, params, Y, I)
    exact = exact_derivatives(Cs, A, b, Y.reshape(-1), order)
    N = spec.total_nodes
    expected = np.concatenate([np.array(e, dtype=float).reshape(-1)[(order - 1) * N:] for e in exact])
    np.testing.assert_allclose(y[0], expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_derivatives_readout_of_the_cascade_equals_time_derivatives_of_its_solution():
    spec, params, x, V0 = make_case("none", "expeuler", "derivatives", order=3, n_nodes=1, batch=1, param="raw")
    y, _ = kr.forward(spec, params, x, V0)
    Y = _state_after(spec, params, x, V0)[0, :, 0]
    current = float((x @ params["W"].T + params["b"])[0, 0])
    sol, t = cascade_response(params["C_raw"][:, 0], params["g_raw"][:, 0], params["beta"][:, 0], current,
                              V0=Y, leak=params["leak"][:, 0])
    expected = [float(sol.diff(t, m).subs(t, 0).evalf(30)) for m in range(4)]
    np.testing.assert_allclose(y[0], expected, rtol=1e-12)
