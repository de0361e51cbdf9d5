"""Task data: Burgers solver against Cole-Hopf, random fields, the oscillator, digits, the registry."""
import numpy as np
import pytest

from helpers import assert_close
from kinn_ref.tasks.burgers import (cole_hopf, gaussian_random_field, make_burgers_data, solve_burgers,
                                    stencil_features, wavenumbers)
from kinn_ref.tasks.oscillator import damped_response, make_oscillator_data
from kinn_ref.tasks.registry import TASKS, Dataset, get_task
from kinn_ref.tasks.run import train_task


@pytest.mark.parametrize("length,amplitude,t_end", [(1.0, 1.0, 0.3), (2 * np.pi, 1.5, 1.0)])
def test_burgers_solver_matches_cole_hopf(length, amplitude, t_end):
    """u0 = a (sin(kx) + 0.5 cos(2kx)) with k = 2 pi / L has the periodic potential P below."""
    k = 2 * np.pi / length
    x = np.arange(128) * length / 128
    u0 = amplitude * (np.sin(k * x) + 0.5 * np.cos(2 * k * x))
    potential = lambda s: amplitude * (-np.cos(k * s) / k + 0.25 * np.sin(2 * k * s) / k)  # noqa: E731
    u = solve_burgers(u0, t_end, nu=0.1, length=length)
    assert_close(u, cole_hopf(potential, x, t_end, nu=0.1, length=length), rtol=1e-7)


def test_burgers_conserves_the_mean_and_decays():
    data = make_burgers_data(6, 64, seed=3)
    assert_close(data.u1.mean(axis=1), data.u0.mean(axis=1), rtol=1e-12)
    assert np.all(data.u1.std(axis=1) < data.u0.std(axis=1))


def test_gaussian_random_field_has_the_prescribed_spectrum():
    rng = np.random.default_rng(0)
    u = gaussian_random_field(4000, 32, rng, length=1.0, scale=625.0, tau=5.0, gamma=2.0)
    k = wavenumbers(32, 1.0)
    expected = 625.0 * (k ** 2 + 25.0) ** -2.0
    c = np.fft.rfft(u, axis=1) / 32
    power = np.mean(np.abs(c) ** 2, axis=0)
    assert_close(power[:6], expected[:6], rtol=0.1)
    assert np.allclose(gaussian_random_field(3, 16, rng, zero_mean=True).mean(axis=1), 0.0, atol=1e-12)


def test_stencil_features_are_periodic_shifts():
    u = np.arange(10.0)[None]
    f = stencil_features(u, 1)
    assert f.shape == (1, 10, 3)
    assert f[0, 0].tolist() == [9.0, 0.0, 1.0] and f[0, 9].tolist() == [8.0, 9.0, 0.0]


def test_oscillator_response_to_a_step_is_the_closed_form():
    dt, omega = 0.05, 1.5
    y = damped_response(np.ones((1, 200)), dt, omega, zeta=1.0)[0]
    t = dt * np.arange(1, 201)
    assert_close(y, 1 - (1 + omega * t) * np.exp(-omega * t), rtol=1e-12)
    data = make_oscillator_data(5, n_steps=30, seed=1)
    assert data.u.shape == data.y.shape == (5, 30, 1)


def test_digits_split_is_stratified():
    pytest.importorskip("sklearn")
    from kinn_ref.tasks.digits import load_digits_split
    x_train, y_train, x_test, y_test = load_digits_split(0.2, seed=0)
    assert x_train.shape[1] == 64 and len(x_train) + len(x_test) == 1797
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    counts = np.bincount(y_test, minlength=10) / np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(counts - 0.2) < 0.02)


@pytest.mark.parametrize("task,model", [(t, m) for t in TASKS for m in TASKS[t].models])
def test_every_registered_model_runs_a_step(task, model):
    rng = np.random.default_rng(0)
    if task == "burgers":
        u = gaussian_random_field(6, 16, rng)
        data = Dataset(u[:4], u[:4], u[4:], u[4:])
    elif task == "digits":
        data = Dataset(rng.random((4, 64)), np.arange(4), rng.random((2, 64)), np.arange(2))
    elif task == "mnist1d":
        data = Dataset(rng.standard_normal((4, 40)), np.arange(4), rng.standard_normal((2, 40)), np.arange(2))
    else:
        s = make_oscillator_data(6, n_steps=10)
        data = Dataset(s.u[:4], s.y[:4], s.u[4:], s.y[4:])
    result, records, _ = train_task(task, model, dataset=data, progress=False, epochs=1, batch_size=2)
    assert np.isfinite(result["value"]) and len(records) == 1
    with pytest.raises(ValueError, match="model"):
        get_task(task).model("nope", data)


@pytest.mark.slow
def test_cascade_order_matters_on_the_oscillator():
    errors = {m: train_task("oscillator", m, size="full", progress=False)[0]["value"]
              for m in TASKS["oscillator"].models}
    assert errors["kinn-k2"] < 0.2 * errors["kinn-k1"] and errors["kinn-k3"] < errors["kinn-k1"]


@pytest.mark.slow
def test_digits_kinn_reaches_97_percent():
    pytest.importorskip("sklearn")
    assert train_task("digits", "kinn", size="full", progress=False)[0]["value"] >= 0.97


def test_reference_predictions_heat_is_the_small_amplitude_limit():
    from kinn_ref.tasks.burgers import reference_predictions
    x = np.arange(64) / 64
    u0 = 1e-6 * (np.sin(2 * np.pi * x) + np.cos(6 * np.pi * x))[None] + 0.0
    refs = reference_predictions(u0)
    assert_close(refs["heat"], solve_burgers(u0, 1.0), rtol=1e-5)
    assert np.allclose(refs["mean"], u0.mean())


def test_baselines_are_computed_from_the_held_out_data():
    rng = np.random.default_rng(0)
    burgers = TASKS["burgers"]
    u0 = gaussian_random_field(8, 32, rng)
    u1 = solve_burgers(u0, 1.0)
    exact_heat = Dataset(u0[:4], u1[:4], u0[4:], u1[4:])
    scores = burgers.baseline_scores(exact_heat)
    assert set(scores) == {"no learning: conserved mean of u(x,0)", "no learning: linear heat eq. u_t = nu u_xx"}
    assert all(0 < v < 1 for v in scores.values())
    from kinn_ref.tasks.burgers import reference_predictions
    heat = reference_predictions(u0[4:])["heat"]   # targets the heat equation predicts exactly
    assert burgers.baseline_scores(Dataset(u0[:4], u1[:4], u0[4:], heat))[
        "no learning: linear heat eq. u_t = nu u_xx"] < 1e-12
    constant = u0[4:] * 0 + u0[4:].mean(axis=1, keepdims=True)   # targets equal to the mean: that baseline is exact
    assert burgers.baseline_scores(Dataset(u0[:4], u1[:4], u0[4:], constant))[
        "no learning: conserved mean of u(x,0)"] < 1e-12
    digits = TASKS["digits"].baseline_scores(Dataset(rng.random((5, 64)), np.array([3, 3, 3, 1, 2]),
                                                     rng.random((4, 64)), np.array([3, 0, 3, 9])))
    assert digits == {"no learning: majority class (3), chance": 0.5}
    s = make_oscillator_data(6, n_steps=40, seed=2)
    osc = TASKS["oscillator"]
    data = Dataset(s.u[:3], s.y[:3], s.u[3:], s.y[3:], info={"dt": s.dt, "omega": s.omega, "zeta": s.zeta})
    (label, value), = osc.baseline_scores(data).items()
    lag = round(2 * s.zeta / s.omega / s.dt)
    delayed = np.concatenate([np.zeros((3, lag, 1)), s.u[3:, :-lag]], axis=1)
    assert f"{lag} samples" in label
    assert_close(value, np.mean(np.linalg.norm((delayed - s.y[3:]).reshape(3, -1), axis=1)
                               / np.linalg.norm(s.y[3:].reshape(3, -1), axis=1)), rtol=1e-9)


def test_train_task_times_the_first_step_apart_and_trains_the_same():
    s = make_oscillator_data(6, n_steps=10)
    data = Dataset(s.u[:4], s.y[:4], s.u[4:], s.y[4:], info={"dt": s.dt, "omega": s.omega, "zeta": s.zeta})
    common = dict(dataset=data, progress=False, epochs=2, batch_size=2)
    warm, _, t_warm = train_task("oscillator", "kinn-k2", **common)
    cold, _, t_cold = train_task("oscillator", "kinn-k2", warmup=False, **common)
    assert warm["compile_seconds"] > 0 and warm["train_seconds"] > 0 and cold["compile_seconds"] is None
    assert warm["value"] == cold["value"] and len(warm["baselines"]) == 1
    p_warm, p_cold = t_warm.model.parameters(), t_cold.model.parameters()
    assert all(np.array_equal(p_warm[k], p_cold[k]) for k in p_warm)


@pytest.mark.parametrize("name", ["oscillator", "burgers"])
def test_a_negative_data_seed_is_named(name):
    from kinn_ref.tasks.registry import get_task
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        get_task(name).make_data("small", -1)


@pytest.mark.slow
def test_mnist1d_kinn_reaches_91_percent():
    pytest.importorskip("mnist1d")
    assert train_task("mnist1d", "kinn", size="full", backend="numba", progress=False)[0]["value"] >= 0.91
