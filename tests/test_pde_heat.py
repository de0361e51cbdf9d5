"""The heat equation on a KINN RC mesh: analytic Fourier solutions, convergence orders, DC steady state."""
import json
import math
import warnings

import numpy as np
import pytest

import kinn_ref as kr
from helpers import INTEGRATOR_ORDERS, assert_close
from kinn_ref.cli import main
from kinn_ref.errors import UnstableStepError, UnstableStepWarning
from kinn_ref.tasks.heat import dc_solution, pde_grid, solve_pde_with_kinn
from kinn_ref.tasks.heat_check import convergence_dt, mode_error, time_steps

KAPPA = 0.5
# boundary -> (initial mode on [0, 1], its Laplacian eigenvalue, discrete eigenvalue factor)
MODES = {
    "dirichlet": (lambda x: np.sin(np.pi * x), np.pi ** 2, lambda dx: 4 / dx ** 2 * np.sin(np.pi * dx / 2) ** 2),
    "neumann": (lambda x: np.cos(np.pi * x), np.pi ** 2, lambda dx: 4 / dx ** 2 * np.sin(np.pi * dx / 2) ** 2),
    "periodic": (lambda x: np.sin(2 * np.pi * x), 4 * np.pi ** 2,
                 lambda dx: 4 / dx ** 2 * np.sin(np.pi * dx) ** 2),
}


def _slope(hs, errors):
    return np.polyfit(np.log(hs), np.log(errors), 1)[0]


@pytest.mark.parametrize("boundary", MODES)
def test_space_error_is_second_order(boundary):
    mode, lam, _ = MODES[boundary]
    T, dt = 0.05, 2e-4
    hs, errors = [], []
    for n in (12, 24, 48):
        (x,) = pde_grid(1.0, n, boundary)
        sol = solve_pde_with_kinn(x, mode(x), boundary, round(T / dt), dt=dt, diffusivity=KAPPA, integrator="rk4")
        errors.append(np.abs(sol.u - mode(x) * np.exp(-KAPPA * lam * T)).max())
        hs.append(sol.dx)
    assert 1.9 < _slope(hs, errors) < 2.1


@pytest.mark.parametrize("integrator,order", INTEGRATOR_ORDERS)
def test_time_error_has_the_integrator_order(integrator, order):
    """Against the exact solution of the semi-discrete mesh (the discrete Fourier mode), so only time errors remain."""
    mode, _, discrete = MODES["dirichlet"]
    (x,) = pde_grid(1.0, 20 if order == 1 else 8, "dirichlet")
    T = 0.2
    # inside the stable and asymptotic range (euler: dt < dx^2 / (2 kappa); rk4: 4 s dt < 2.78)
    dts = [T / 200, T / 400, T / 800] if order == 1 else [T / 20, T / 40, T / 80]
    errors = []
    for dt in dts:
        sol = solve_pde_with_kinn(x, mode(x), "dirichlet", round(T / dt), dt=dt, diffusivity=KAPPA,
                                  integrator=integrator)
        exact = mode(x) * np.exp(-KAPPA * discrete(x[1] - x[0]) * T)
        errors.append(np.abs(sol.u - exact).max())
    assert order - 0.15 < _slope(dts, errors) < order + 0.25


def test_2d_dirichlet_mode_converges_at_second_order():
    T, dt = 0.02, 1e-4
    hs, errors = [], []
    for n in (8, 16, 32):
        x, y = pde_grid((1.0, 1.0), (n, n), "dirichlet")
        u0 = lambda X, Y: np.sin(np.pi * X) * np.sin(2 * np.pi * Y)  # noqa: E731
        sol = solve_pde_with_kinn((x, y), u0, "dirichlet", round(T / dt), dt=dt, diffusivity=KAPPA,
                                  integrator="rk4")
        X, Y = np.meshgrid(x, y, indexing="ij")
        errors.append(np.abs(sol.u - u0(X, Y) * np.exp(-5 * KAPPA * np.pi ** 2 * T)).max())
        hs.append(sol.dx)
    assert 1.9 < _slope(hs, errors) < 2.1


def test_steady_state_matches_the_dc_nodal_solution():
    x, y = pde_grid((1.0, 1.0), (12, 12), "dirichlet")
    bc = {"type": "dirichlet", "value": lambda X, Y: 1.0 + X - 0.5 * Y}
    source = lambda X, Y: np.exp(-((X - 0.3) ** 2 + (Y - 0.6) ** 2) / 0.02)  # noqa: E731
    sol = solve_pde_with_kinn((x, y), 0.0, bc, 200, dt=1.0, diffusivity=KAPPA, source=source)
    assert_close(sol.u, dc_solution((x, y), bc, KAPPA, source), rtol=1e-10)


def test_linear_dirichlet_and_quadratic_neumann_steady_states_are_exact():
    (x,) = pde_grid(1.0, 9, "dirichlet")
    sol = solve_pde_with_kinn(x, 0.0, {"type": "dirichlet", "value": (1.0, 2.0)}, 300, dt=1.0)
    assert_close(sol.u, 1.0 + x, rtol=1e-10)
    # u = -x^2 + 0.3 x + 1 solves kappa u'' + 2 kappa = 0 with outward derivatives -0.3 (x=0), -1.7 (x=1)
    (x,) = pde_grid(1.0, 10, "neumann")
    exact = -x ** 2 + 0.3 * x + 1.0
    bc = {"type": "neumann", "flux": (-0.3, -1.7)}
    dc = dc_solution(x, bc, KAPPA, 2 * KAPPA, mean=exact.mean())
    assert_close(dc, exact, rtol=1e-10)
    sol = solve_pde_with_kinn(x, exact.mean(), bc, 400, dt=1.0, diffusivity=KAPPA, source=2 * KAPPA)
    assert_close(sol.u, exact, rtol=1e-9)


@pytest.mark.parametrize("integrator", ["euler", "implicit", "rk4"])
def test_neumann_and_periodic_meshes_conserve_the_mean(integrator):
    """Conservation holds for schemes that are polynomials/rationals in the mesh Laplacian (column sums 0);
    exponential Euler treats edge nodes of a Neumann mesh with their own decay and does not conserve."""
    for boundary in ("neumann", "periodic"):
        (x,) = pde_grid(2.0, 16, boundary)
        u0 = np.exp(-(x - 0.7) ** 2 / 0.05)
        # dx = 0.125: euler's stable limit is dt <= 2 dx^2 / 4 = 0.0078
        sol = solve_pde_with_kinn(x, u0, boundary, 30, dt=0.005, integrator=integrator, return_history=True)
        assert sol.history.shape == (31, 16)
        assert np.allclose(sol.history.mean(axis=1), u0.mean(), rtol=1e-12)


def test_time_dependent_source_is_a_sequence_input():
    (x,) = pde_grid(1.0, 8, "periodic")
    f = np.cos(2 * np.pi * x)
    held = solve_pde_with_kinn(x, 0.0, "periodic", 5, dt=0.01, source=f)
    seq = solve_pde_with_kinn(x, 0.0, "periodic", 5, dt=0.01, source=np.tile(f, (5, 1)))
    assert_close(seq.u, held.u)


@pytest.mark.parametrize("backend", kr.available_backends())
def test_every_backend_solves_the_same_mesh(backend):
    x, y = pde_grid((1.0, 1.0), (6, 6), "neumann")
    u0 = lambda X, Y: np.cos(np.pi * X) + Y  # noqa: E731
    ref = solve_pde_with_kinn((x, y), u0, "neumann", 10, dt=0.002, integrator="euler")
    other = solve_pde_with_kinn((x, y), u0, "neumann", 10, dt=0.002, integrator="euler", backend=backend)
    assert_close(other.u, ref.u)


def test_bad_input_is_rejected():
    x = np.linspace(0, 1, 8)
    with pytest.raises(ValueError, match="share one spacing"):
        solve_pde_with_kinn((x, np.linspace(0, 2, 8)), 0.0, "neumann", 1, dt=0.1)
    with pytest.raises(ValueError, match="initial_condition"):
        solve_pde_with_kinn(x, np.zeros(7), "neumann", 1, dt=0.1)
    with pytest.raises(ValueError, match="boundary_conditions"):
        solve_pde_with_kinn(x, 0.0, "robin", 1, dt=0.1)
    with pytest.raises(ValueError, match="uniformly spaced"):
        solve_pde_with_kinn(x ** 2, 0.0, "neumann", 1, dt=0.1)
    with pytest.raises(ValueError, match="mean"):
        dc_solution(x, "neumann")


# the mesh of `kinn-ref solve-pde --integrator euler --dt 1e-2`: 32 dirichlet nodes on [0, 1], kappa = 1
DIRICHLET_32 = pde_grid(1.0, 32, "dirichlet")[0]
LAM_MAX = 4 * 33 ** 2 * np.sin(np.pi * 32 / 66) ** 2     # |extreme eigenvalue| of kappa * Laplacian
RK4_LIMIT = 2.785293563405


@pytest.mark.parametrize("integrator,limit", [("euler", 2.0), ("rk4", RK4_LIMIT)])
def test_an_unstable_explicit_step_is_refused_naming_the_largest_stable_dt(integrator, limit):
    dt_max = limit / LAM_MAX
    with pytest.raises(UnstableStepError, match=rf"dt=0\.01 .*largest stable dt is {dt_max:.6g}") as info:
        solve_pde_with_kinn(DIRICHLET_32, np.sin(np.pi * DIRICHLET_32), "dirichlet", 10, dt=1e-2,
                            integrator=integrator)
    assert isinstance(info.value, ValueError)
    assert info.value.dt_max == pytest.approx(dt_max, rel=1e-9) and info.value.dt == 1e-2
    # just below the bound runs, and the solution records the bound
    sol = solve_pde_with_kinn(DIRICHLET_32, np.sin(np.pi * DIRICHLET_32), "dirichlet", 10, dt=0.999 * dt_max,
                              integrator=integrator)
    assert sol.dt_max == pytest.approx(dt_max, rel=1e-9) and sol.stable
    assert np.abs(sol.u).max() <= 1.0


@pytest.mark.parametrize("integrator", ["implicit", "expeuler"])
def test_passive_mesh_is_unconditionally_stable_for_implicit_and_expeuler(integrator):
    sol = solve_pde_with_kinn(DIRICHLET_32, np.sin(np.pi * DIRICHLET_32), "dirichlet", 4, dt=10.0,
                              integrator=integrator)
    assert math.isinf(sol.dt_max) and sol.stable
    assert np.abs(sol.u).max() <= 1.0


def test_allow_unstable_runs_the_step_and_warns():
    u0 = np.ones_like(DIRICHLET_32)      # excites the fastest mode, amplified by |1 - dt |lam|| = 42 per step
    with pytest.warns(UnstableStepWarning, match=r"largest stable dt is 0\.00046"):
        sol = solve_pde_with_kinn(DIRICHLET_32, u0, "dirichlet", 10, dt=1e-2, integrator="euler",
                                  allow_unstable=True)
    assert not sol.stable and sol.dt == 1e-2 and sol.n_steps == 10
    assert np.abs(sol.u).max() > 1e10          # it did run: the unstable mode grew


def test_a_stable_step_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        solve_pde_with_kinn(DIRICHLET_32, 0.0, "dirichlet", 3, dt=4e-4, integrator="euler", allow_unstable=True)


def test_the_step_used_is_recorded():
    err, sol, _ = mode_error("periodic", 1, 16, 2.5e-3, 0.1, integrator="rk4")
    assert sol.dt == pytest.approx(2.5e-3, rel=1e-12) and sol.n_steps == 40
    assert sol.times[-1] == pytest.approx(0.1, rel=1e-12) and sol.integrator == "rk4"
    assert sol.dt_max == pytest.approx(RK4_LIMIT / (4 * 16 ** 2), rel=1e-9)
    assert err < 1e-2


@pytest.mark.parametrize("dt,nearest", [(0.3, 0.1), (0.03, 0.1 / 3), (7e-4, 0.1 / 143)])
def test_a_dt_that_does_not_divide_t_end_is_refused(dt, nearest):
    with pytest.raises(ValueError, match=rf"dt {dt:g} does not divide t_end 0\.1 .*nearest dt that does is "
                                         rf"{nearest:.6g}"):
        mode_error("dirichlet", 1, 8, dt, 0.1)
    assert time_steps(0.1, 1e-3) == 100 and time_steps(1.0, 0.1) == 10


def test_a_non_positive_dt_is_refused():
    for dt in (0.0, -1e-3, float("nan")):
        with pytest.raises(ValueError, match="dt must be a finite number > 0"):
            solve_pde_with_kinn(DIRICHLET_32, 0.0, "dirichlet", 1, dt=dt)
        with pytest.raises(ValueError, match="dt must be a finite number > 0"):
            time_steps(0.1, dt)


@pytest.mark.parametrize("dt,match", [(1e-320, "dt must be at least 2.2"),
                                      (1e-300, r"dt 1e-300 is too small for t_end 0.1: .* more than 2\*\*53")])
def test_a_dt_too_small_to_count_steps_is_refused(dt, match):
    with pytest.raises(ValueError, match=match):
        time_steps(0.1, dt)


def test_convergence_steps_divide_t_end_and_are_stable():
    for dim in (1, 2):
        for n in (8, 16, 32):
            dx = 1.0 / n
            dt = convergence_dt(dx, dim, 1.0, 0.05)
            assert dt <= 0.25 * dx ** 2 / dim * (1 + 1e-12)
            assert time_steps(0.05, dt) * dt == pytest.approx(0.05, rel=1e-12)


def test_solve_pde_command_refuses_an_unstable_step_with_exit_2(tmp_path, capsys):
    argv = ["solve-pde", "--integrator", "euler", "--dt", "1e-2", "--points", "32", "--backend", "numpy",
            "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "largest stable dt is 0.000460179" in err and "--allow-unstable" in err
    assert not (tmp_path / "result.json").exists()


def test_solve_pde_command_refuses_a_dt_not_dividing_t_end(tmp_path, capsys):
    assert main(["solve-pde", "--dt", "0.3", "--backend", "numpy", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--dt 0.3 does not divide --t-end 0.1" in err and "is 0.1 (1 step)" in err
    assert main(["solve-pde", "--dt", "-1", "--backend", "numpy", "--out", str(tmp_path)]) == 2
    assert "--dt must be a finite number > 0" in capsys.readouterr().err


def test_solve_pde_command_records_the_step_and_runs_unstable_on_request(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    argv = ["solve-pde", "--integrator", "euler", "--dt", "1e-2", "--points", "32", "--backend", "numpy",
            "--allow-unstable", "--out", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning: dt=0.01 is unstable" in captured.err
    assert "dt=0.01, 10 steps" in captured.out
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["dt"] == 0.01 and result["n_steps"] == 10 and result["stable"] is False
    assert result["dt_max"] == pytest.approx(2 / LAM_MAX, rel=1e-9)
    assert result["space_integrator"] == "rk4" and len(result["space_dt"]) == 3
