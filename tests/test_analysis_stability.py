"""Stability analysis: SymPy-derived stability functions, closed forms, dt_max of real layers against
kinn_ref.linear_analysis and against exact symbolic amplification matrices, backends below/above dt_max."""
import json
import math
import os

import numpy as np
import pytest
import sympy

import kinn_ref as kr
from kinn_ref.analysis.discrete_map import grid_laplacian
from kinn_ref.integrators import INTEGRATORS
from kinn_ref.analysis.stability import (cell_dt_max, derived_stability_function_numeric, dt_max_table, layer_cells,
                                         layer_dt_max, layer_spectral_radius, ray_exit, scale_conductances,
                                         stability_function_numeric, unit_laplacian_eigenvalues)
from kinn_ref.analysis.stability_functions import (boundary_polynomial, one_step_map, real_stability_limit,
                                          stability_function, symbols, uncoupled_dt_max,
                                          uncoupled_stability_function)
from kinn_ref.analysis.symbolic_layer import symbolic_amplification_matrix, symbolic_dt_max
from kinn_ref.analysis.validation import validate_backends
from helpers import COUPLING_CASES, make_case
from kinn_ref.cli import main
from kinn_ref.coupling import unit_laplacian_sparse
from kinn_ref.linear_analysis import amplification_matrix, max_stable_dt, spectral_radius

z, w = symbols()["z"], symbols()["w"]


def test_stability_functions_derived_from_kcl():
    expected = {"euler": 1 + z, "implicit": 1 / (1 - z), "rk4": 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24}
    for name, R in expected.items():
        assert sympy.simplify(stability_function(name) - R) == 0, name
    R = stability_function("expeuler")
    assert sympy.simplify(R - (sympy.exp(w) + (sympy.exp(w) - 1) / w * (z - w))) == 0
    assert sympy.simplify(uncoupled_stability_function("expeuler") - sympy.exp(z)) == 0
    assert sympy.limit(R, w, 0) == 1 + z            # nothing integrated exactly: explicit Euler


def test_numeric_stability_functions_are_the_derived_ones():
    """The NumPy closed forms the divergence check uses equal the SymPy derivation (and fail if one drifts)."""
    zs = np.random.default_rng(5).standard_normal(50) * 3 + 1j * np.random.default_rng(6).standard_normal(50) * 3
    for name, method in INTEGRATORS.items():
        if not method.function_of_dtJ:
            assert stability_function_numeric(name) is derived_stability_function_numeric(name)
            continue
        fast, derived = stability_function_numeric(name)(zs), derived_stability_function_numeric(name)(zs)
        np.testing.assert_allclose(fast, derived, rtol=1e-13, atol=0, err_msg=name)


@pytest.mark.parametrize("name", [n for n, m in INTEGRATORS.items() if m.function_of_dtJ])
def test_each_integrator_states_its_own_stability_correctly(name):
    """What an integrator says of itself (kinn_ref.integrators.Method) holds: ``R(Z)`` of a matrix is ``R`` on
    its eigenvalues, A-stability is what ``|R|`` shows on the left half-plane, and ``stable_from`` is where
    ``|R(dt lam)|`` of a growing mode drops to 1."""
    method = INTEGRATORS[name]
    rng = np.random.default_rng(3)
    Z = 0.4 * rng.standard_normal((4, 4)) - 0.5 * np.eye(4)        # a real matrix, complex eigenvalues
    lam, basis = np.linalg.eig(Z)
    expected = basis @ np.diag(method.stability_function(lam)) @ np.linalg.inv(basis)
    assert np.iscomplexobj(lam) and np.abs(expected.imag).max() < 1e-12
    np.testing.assert_allclose(method.amplification_matrix(Z), expected.real, rtol=0, atol=1e-12)
    left = np.concatenate([-rng.exponential(3.0, 400) + 1j * rng.standard_normal(400) * 4,
                           1j * np.linspace(-20, 20, 81), -np.logspace(-3, 3, 61)])
    assert bool(np.all(np.abs(method.stability_function(left)) <= 1 + 1e-12)) is method.a_stable
    for grow in (0.5 + 2j, 1.0, 0.1 - 0.3j):
        start = method.stable_from(grow)
        if start is None:
            assert np.all(np.abs(method.stability_function(np.logspace(-3, 3, 61) * grow)) > 1)
            continue
        assert abs(method.stability_function(start * 1.001 * grow)) <= 1
        assert abs(method.stability_function(start * 0.999 * grow)) > 1


def test_one_step_maps_are_consistent_with_the_ode():
    s = symbols()
    for name in INTEGRATORS:
        step = one_step_map(name)
        slope = sympy.limit(sympy.diff(step, s["dt"]), s["dt"], 0)       # first-order consistency
        assert sympy.simplify(slope - (-s["G"] * s["V"] + s["w_o"] * s["V"] + s["i"]) / s["C"]) == 0, name


def test_real_stability_limits():
    assert real_stability_limit("euler") == -2
    z_star = real_stability_limit("rk4")
    assert abs(float(z_star.evalf(30)) + 2.785293563405282) < 1e-14
    R = uncoupled_stability_function("rk4")
    assert abs(R.subs(z, z_star).evalf(40) - 1) < 1e-35            # an exact root of R = 1 (radicals)
    assert real_stability_limit("implicit") == -sympy.oo
    assert real_stability_limit("expeuler") == -sympy.oo


def test_uncoupled_closed_forms():
    assert uncoupled_dt_max("euler", 1.5, 0.6) == pytest.approx(2 * 1.5 / 0.6, rel=1e-15)
    assert uncoupled_dt_max("rk4", 1.0, 2.0) == pytest.approx(2.785293563405282 / 2.0, rel=1e-15)
    assert math.isinf(uncoupled_dt_max("implicit", 1.0, 2.0))
    assert math.isinf(uncoupled_dt_max("euler", 1.0, 0.0))
    assert uncoupled_dt_max("expeuler", 1.0, -0.5) == 0.0


def test_boundary_polynomial_and_ray_exit():
    x, y = symbols()["x"], symbols()["y"]
    Q = boundary_polynomial("euler")
    assert sympy.simplify(Q[0] - 2 * x) == 0 and sympy.simplify(Q[1] - (x**2 + y**2)) == 0
    lam = -0.3 + 1.1j
    assert ray_exit("euler", lam) == pytest.approx(-2 * lam.real / abs(lam) ** 2, rel=1e-13)
    assert ray_exit("rk4", 1j) == pytest.approx(2 * math.sqrt(2), rel=1e-12)   # rk4 on the imaginary axis
    assert ray_exit("euler", 1j) == 0.0 and ray_exit("euler", 0.2) == 0.0
    assert math.isinf(ray_exit("implicit", -1 + 5j)) and ray_exit("implicit", 0.5) == 0.0
    with pytest.raises(ValueError, match="expeuler"):
        boundary_polynomial("expeuler")


@pytest.mark.parametrize("shape", [(5,), (4,), (2,), (3, 4), (2, 3), (3, 3)])
@pytest.mark.parametrize("boundary", ["periodic", "neumann", "dirichlet"])
def test_grid_laplacian_and_its_eigenvalues(shape, boundary):
    L = grid_laplacian(shape, boundary)
    np.testing.assert_array_equal(L, unit_laplacian_sparse(shape, boundary).toarray())
    np.testing.assert_allclose(np.sort(unit_laplacian_eigenvalues(shape, boundary)),
                               np.linalg.eigvalsh(L.astype(float)), atol=1e-12)


def test_grid_eigenvalues_against_sympy():
    for boundary in ("periodic", "neumann", "dirichlet"):
        exact = sympy.Matrix(grid_laplacian((4,), boundary).tolist()).eigenvals()
        values = sorted(float(v) for v, m in exact.items() for _ in range(m))
        np.testing.assert_allclose(sorted(unit_laplacian_eigenvalues((4,), boundary)), values, atol=1e-14)


@pytest.mark.parametrize("coupling", list(COUPLING_CASES))
@pytest.mark.parametrize("param", ["positive", "raw"])
def test_dt_max_and_spectral_radius_agree_with_linear_analysis(coupling, param):
    spec, params, _, _ = make_case(coupling, "euler", "last", param, seed=3)
    for name, steps in dt_max_table(spec, params).items():
        layer = spec.replace(integrator=name)
        numeric = max_stable_dt(layer, params, dt_max=1e5)
        ours = min(s.dt_max for s in steps)
        assert (math.isinf(ours) and math.isinf(numeric)) or ours == pytest.approx(numeric, rel=2e-6), name
        for dt in (0.05, 0.37, 1.9):
            assert layer_spectral_radius(layer, params, dt) == pytest.approx(spectral_radius(layer, params, dt),
                                                                             rel=1e-9, abs=1e-12)


def _rotating_dense_layer():
    """Dense cell whose continuous system is stable but whose off-diagonal part defeats exponential Euler."""
    spec = kr.LayerSpec(1, 2, order=1, coupling="dense", param="raw")
    p = kr.init_params(spec, seed=1)
    p["C_raw"][:], p["g_raw"][:] = 1.0, 1.0
    p["G_raw"][0] = [[-1.0, 3.0], [-3.0, -1.0]]
    return spec, p


def test_expeuler_dt_max_of_a_non_passive_cell():
    spec, p = _rotating_dense_layer()
    step = dt_max_table(spec, p)["expeuler"][0]
    assert step.method == "spectral radius of M(dt)"
    assert step.dt_max == pytest.approx(max_stable_dt(spec.replace(integrator="expeuler"), p), rel=2e-6)
    M, dt = symbolic_amplification_matrix(spec.replace(integrator="expeuler"), p)
    assert symbolic_dt_max(M, dt) == pytest.approx(step.dt_max, rel=1e-9)   # numeric path: margin 1e-10 on rho


def test_growing_modes_give_zero_dt_max_and_implicit_stable_from():
    spec = kr.LayerSpec(1, 2, coupling="dense", param="raw")
    p = kr.init_params(spec, seed=0)
    p["g_raw"][:] = 0.0
    p["G_raw"][0] = [[0.5, 0.0], [0.0, -1.0]]          # one growing mode, rate 0.5
    table = dt_max_table(spec, p)
    assert all(table[n][0].dt_max == 0.0 for n in table)
    assert table["implicit"][0].stable_from == pytest.approx(2 * 0.5 / 0.25)
    assert spectral_radius(spec.replace(integrator="implicit"), p, 4.01) < 1 < \
        spectral_radius(spec.replace(integrator="implicit"), p, 3.99)


TINY = [("none", "euler", 2, 2), ("none", "rk4", 1, 2), ("dense", "euler", 2, 2), ("dense", "rk4", 1, 2),
        ("dense", "implicit", 2, 2), ("kirchhoff", "expeuler", 2, 2), ("kirchhoff", "rk4", 1, 2),
        ("grid1d-dirichlet", "euler", 1, 1), ("grid1d-periodic", "rk4", 1, 1),
        ("grid1d-neumann", "expeuler", 1, 1)]


@pytest.mark.parametrize("coupling,integrator,order,nodes", TINY)
def test_symbolic_amplification_matrix_matches_linear_analysis(coupling, integrator, order, nodes):
    extra = {"grid1d-dirichlet": 3, "grid1d-periodic": 3, "grid1d-neumann": 3}
    spec, params, _, _ = make_case(coupling, integrator, "last", "positive", order=order, n_nodes=nodes, seed=1)
    if coupling in extra:
        spec = spec.replace(grid_shape=(extra[coupling],))
        params = kr.init_params(spec, seed=2)
    M, dt = symbolic_amplification_matrix(spec, params)
    for value in (0.1, 0.7):
        exact = np.array(M.subs(dt, sympy.Rational(value)).evalf(30).tolist(), dtype=float)
        np.testing.assert_allclose(amplification_matrix(spec, params, value), exact, rtol=1e-13, atol=1e-14)
    ours, numeric = layer_dt_max(spec, params), max_stable_dt(spec, params, dt_max=1e3)
    if integrator in ("euler", "rk4"):
        exact_dt = symbolic_dt_max(M, dt)
        assert ours == pytest.approx(exact_dt, rel=1e-10)
        assert numeric == pytest.approx(exact_dt, rel=2e-6)
    else:
        assert math.isinf(ours) and math.isinf(numeric)


def test_one_node_closed_form_is_exact():
    spec = kr.LayerSpec(1, 1, coupling="none", integrator="euler", param="raw")
    p = kr.init_params(spec, seed=0)
    p["C_raw"][:], p["g_raw"][:] = 0.75, 1.25
    M, dt = symbolic_amplification_matrix(spec, p)
    assert M.shape == (1, 1)
    exact = sympy.Rational(2) * sympy.Rational(0.75) / sympy.Rational(1.25)         # 2 C / g
    assert abs(symbolic_dt_max(M, dt) - exact) < sympy.Float("1e-35")
    assert cell_dt_max(layer_cells(spec, p)[0], "euler").dt_max == pytest.approx(1.2, rel=1e-15)


@pytest.mark.parametrize("coupling", ["dense", "kirchhoff", "grid1d-neumann"])
@pytest.mark.parametrize("param", ["positive", "raw"])
@pytest.mark.parametrize("target", ["coupling", "leak", "all"])
def test_scaled_parameters_match_scaled_cells(coupling, param, target):
    spec, params, _, _ = make_case(coupling, "euler", "last", param, seed=4)
    for s in (0.1, 3.0):
        direct = layer_cells(spec, params, s, target)
        via_params = layer_cells(spec, scale_conductances(spec, params, s, target))
        for a, b in zip(direct, via_params):
            np.testing.assert_allclose(a.jacobian(), b.jacobian(), rtol=1e-12, atol=1e-14)


def _random_layers():
    rng = np.random.default_rng(7)
    out = []
    for coupling, extra in [("dense", {}), ("kirchhoff", {}), ("grid", {"grid_shape": (3, 4),
                                                                       "boundary": "dirichlet"})]:
        spec = kr.LayerSpec(2, 3 if coupling != "grid" else 2, order=2, coupling=coupling, **extra)
        params = kr.init_params(spec, seed=rng)
        params["g_raw"] = params["g_raw"] + 0.3 * rng.standard_normal(params["g_raw"].shape)
        out.append((coupling, spec, params))
    out.append(("dense-non-passive",) + _rotating_dense_layer())
    return out


def _validation_params():
    """(layer, backend, integrators); on the CUDA simulator one short run by default, the rest with --runslow."""
    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
    params = []
    for name, spec, layer_params in _random_layers():
        for backend in kr.available_backends():
            integrators = ("euler", "expeuler", "implicit", "rk4")
            marks = []
            if backend == "cuda" and simulated:
                if name == "kirchhoff":
                    integrators = ("euler",)
                else:
                    marks = [pytest.mark.slow]
            params.append(pytest.param(spec, layer_params, backend, integrators, marks=marks,
                                       id=f"{name}-{backend}-{'-'.join(integrators)}"))
    return params


@pytest.mark.parametrize("spec,params,backend,integrators", _validation_params())
def test_backends_blow_up_exactly_where_the_analysis_says(spec, params, backend, integrators):
    runs = validate_backends(spec, params, backends=[backend], integrators=integrators)
    assert {r.backend for r in runs} == {backend}
    sides = {(r.integrator, r.side) for r in runs}
    for name in set(integrators) & {"euler", "rk4"}:
        assert {(name, "below"), (name, "above")} <= sides
    for r in runs:
        assert r.agrees, r
        assert (r.predicted_rho > 1) == (r.side == "above"), r


def test_stability_cli_writes_report_map_and_plots(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["stability", "--coupling", "kirchhoff", "--nodes", "3", "--order", "2", "--integrator",
                 "euler", "--dt", "0.3", "--resolution", "5", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "largest stable dt per integrator and cell" in text and "<- the layer's integrator" in text
    record = json.loads((out / "stability_map.json").read_text())
    assert record["integrators"]["implicit"]["dt_max"] is None              # unbounded
    spec = kr.LayerSpec(3, 3, order=2, coupling="kirchhoff", integrator="euler", dt=0.3)
    params = kr.init_params(spec, seed=0)
    assert record["integrators"]["euler"]["dt_max"] == pytest.approx(layer_dt_max(spec, params), rel=1e-12)
    assert np.array(record["map"]["integrators"]["rk4"]["spectral_radius"]).shape == (5, 5)
    for png in ("stability_map.png", "stability_regions.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stability_cli_from_config_and_parameter_archive(tmp_path, capsys):
    spec = kr.LayerSpec(2, 2, order=1, coupling="grid", grid_shape=(4,), boundary="neumann", integrator="rk4",
                        dt=5.0)
    config = tmp_path / "layer.json"
    config.write_text(json.dumps({"spec": {"in_features": 2, "n_nodes": 2, "coupling": "grid",
                                           "grid_shape": [4], "boundary": "neumann", "integrator": "rk4",
                                           "dt": 5.0}, "seed": 3}))
    assert main(["stability", "--config", str(config), "--no-plots", "--out", str(tmp_path / "a"),
                 "--check"]) == 1                                              # dt = 5 is unstable for rk4
    params = kr.init_params(spec, seed=3)
    archive = tmp_path / "layer.npz"
    fields = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    np.savez(archive, spec=json.dumps(dict(fields, grid_shape=[4])), **{f"param/{k}": v for k, v in params.items()})
    assert main(["stability", "--checkpoint", str(archive), "--no-plots", "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "stability.json").read_text())
    b = json.loads((tmp_path / "b" / "stability.json").read_text())
    assert a == b and a["integrators"]["rk4"]["verdict"] == "unstable"
    capsys.readouterr()


def test_stability_cli_reads_training_checkpoints(tmp_path, capsys):
    checkpoint = pytest.importorskip("kinn_ref.training.checkpoint")
    from kinn_ref.training.models import build_model
    config = {"model": "kinn", "input_dim": 3, "hidden_dims": [4], "output_dim": 2, "dt": 0.2, "n_steps": 3,
              "options": {"coupling": "dense", "order": 2, "integrator": "rk4"}}
    model = build_model(config)
    path = tmp_path / "ckpt.npz"
    checkpoint.save_checkpoint(path, params=model.parameters(), optimizer_state={"kind": "sgd",
                               "hyperparameters": {}, "step_count": 0, "slots": {}}, config=config, epoch=1,
                               rng_state={}, layer_dt={"layers.0": 0.05})
    assert main(["stability", "--checkpoint", str(path), "--no-plots", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "layers.0:" in text and "layers.1:" in text
    first = json.loads((tmp_path / "stability_layers_0.json").read_text())
    assert first["dt"] == 0.05 and first["spec"]["order"] == 2


def test_stability_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["stability", "--grid-shape", "4y4", "--coupling", "grid"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["stability", "--config", str(bad)]) == 2
    assert main(["stability", "--coupling", "grid"]) == 2                     # grid_shape missing
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--resolution", "64"], ["--scale-target", "leak"],
                                   ["--resolution", "8", "--scale-target", "all"]])
def test_stability_map_options_with_no_plots_are_refused(tmp_path, capsys, extra):
    rc = main(["stability", "--coupling", "kirchhoff", "--nodes", "4", "--no-plots", "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "--no-plots" in err and extra[0] in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "stability.json").exists()
