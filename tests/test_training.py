"""Losses, optimizers, schedules, clipping, conductance penalty and stability guard."""
import numpy as np
import pytest

from helpers import assert_close
from kinn_ref.network import KINN
from kinn_ref.training import (SGD, Adam, AdamW, CosineWarmup, StabilityGuard, StepDecay, clip_by_global_norm,
                               conductance_penalty, global_norm, mse, power_spectral_radius, relative_l2,
                               make_schedule, softmax_cross_entropy)
from kinn_ref.linear_analysis import spectral_radius


def _fd_check(fun, x, grad, rng, eps=1e-6, n_dirs=3):
    for _ in range(n_dirs):
        d = rng.standard_normal(x.shape)
        fd = (fun(x + eps * d) - fun(x - eps * d)) / (2 * eps)
        assert abs(fd - np.sum(grad * d)) <= 1e-7 * max(1.0, abs(fd))


@pytest.mark.parametrize("loss", [mse, relative_l2])
def test_regression_loss_gradient_matches_finite_differences(loss):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    value, grad = loss(pred, target)
    assert value > 0 and grad.shape == pred.shape
    _fd_check(lambda p: loss(p, target)[0], pred, grad, rng)


def test_cross_entropy_gradient_and_value():
    rng = np.random.default_rng(1)
    logits, labels = 3 * rng.standard_normal((5, 4)), rng.integers(0, 4, 5)
    value, grad = softmax_cross_entropy(logits, labels)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert_close(value, -np.mean(np.log(p[np.arange(5), labels])))
    _fd_check(lambda z: softmax_cross_entropy(z, labels)[0], logits, grad, rng)
    big, _ = softmax_cross_entropy(np.array([[1000.0, -1000.0]]), np.array([1]))
    assert np.isfinite(big) and abs(big - 2000.0) < 1e-9


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match="target"):
        mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="labels"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def _quadratic(opt_cls, steps=300, **kw):
    """Minimise sum((p - 3)^2) from zero."""
    p = {"w": np.zeros(4)}
    opt = opt_cls(p, **kw)
    for _ in range(steps):
        opt.step({"w": 2 * (p["w"] - 3.0)})
    return p["w"]


@pytest.mark.parametrize("cls,kw", [(SGD, {"lr": 0.05}), (SGD, {"lr": 0.05, "nesterov": True}),
                                    (Adam, {"lr": 0.1}), (AdamW, {"lr": 0.1, "weight_decay": 0.0})])
def test_optimizers_minimise_a_quadratic(cls, kw):
    assert_close(_quadratic(cls, **kw), np.full(4, 3.0), rtol=1e-3)


def test_adam_first_step_is_lr_times_sign():
    p = {"w": np.zeros(3)}
    Adam(p, lr=0.01).step({"w": np.array([2.0, -0.5, 1e-3])})
    assert_close(p["w"], -0.01 * np.array([1.0, -1.0, 1.0]), rtol=1e-4)


def test_adamw_decay_is_decoupled():
    p = {"a.W": np.ones(2), "a.b": np.ones(2)}
    AdamW(p, lr=0.1, weight_decay=0.5, exclude=("b",)).step({"a.W": np.zeros(2), "a.b": np.zeros(2)})
    assert_close(p["a.W"], np.full(2, 0.95))
    assert_close(p["a.b"], np.ones(2))


def test_optimizer_state_roundtrip_continues_identically():
    rng = np.random.default_rng(2)
    grads = [{"w": rng.standard_normal(3)} for _ in range(6)]
    p1 = {"w": np.zeros(3)}
    o1 = Adam(p1, lr=0.1)
    for g in grads:
        o1.step(g)
    p2 = {"w": np.zeros(3)}
    o2 = Adam(p2, lr=0.1)
    for g in grads[:3]:
        o2.step(g)
    state = o2.state_dict()
    p3 = {"w": p2["w"].copy()}
    o3 = Adam(p3, lr=0.1)
    o3.load_state_dict(state)
    for g in grads[3:]:
        o3.step(g)
    assert np.array_equal(p1["w"], p3["w"])
    with pytest.raises(ValueError, match="adam"):
        SGD({"w": np.zeros(3)}).load_state_dict(state)


def test_clip_by_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    assert clip_by_global_norm(g, 1.0) == pytest.approx(5.0)
    assert global_norm(g) == pytest.approx(1.0)
    assert clip_by_global_norm(g, 10.0) == pytest.approx(1.0)
    assert global_norm(g) == pytest.approx(1.0)


def test_schedules():
    s = StepDecay(1.0, step_size=10, gamma=0.5)
    assert [s(0), s(9), s(10), s(25)] == [1.0, 1.0, 0.5, 0.25]
    c = CosineWarmup(1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert c(0) == pytest.approx(0.1) and c(9) == pytest.approx(1.0)
    assert c(10) == pytest.approx(1.0) and c(60) == pytest.approx(0.55) and c(110) == pytest.approx(0.1)
    assert all(c(i) >= c(i + 1) for i in range(10, 120))


@pytest.mark.parametrize("coupling", ["none", "dense", "kirchhoff", "grid"])
@pytest.mark.parametrize("param", ["positive", "raw"])
def test_conductance_penalty_gradient(coupling, param):
    rng = np.random.default_rng(3)
    extra = {"grid_shape": (4,)} if coupling == "grid" else {}
    model = KINN(2, [3], 2, coupling=coupling, param=param, seed=1, **extra)
    for p in model.parameters().values():
        p += 0.3 * rng.standard_normal(p.shape)
    value, grads = conductance_penalty(model, 0.7)
    assert value > 0
    params = model.parameters()
    for name, g in grads.items():
        base = params[name].copy()

        def f(v):
            params[name][...] = v
            out = conductance_penalty(model, 0.7)[0]
            params[name][...] = base
            return out

        _fd_check(f, base, g, rng)


def test_power_iteration_agrees_with_dense_spectral_radius():
    model = KINN(2, [], 6, coupling="dense", integrator="euler", order=2, dt=0.3, seed=4)
    layer = model.layers[0]
    exact = spectral_radius(layer.spec, layer.params)
    assert power_spectral_radius(layer.spec, layer.params, 0.3, iterations=400) == pytest.approx(exact, rel=2e-2)


@pytest.mark.parametrize("dense_limit", [256, 1])
def test_stability_guard_lowers_an_unstable_dt(dense_limit):
    model = KINN(2, [], 5, coupling="grid", grid_shape=(16,), integrator="euler", dt=0.9, seed=0,
                 boundary="periodic")
    layer = model.layers[0]
    assert spectral_radius(layer.spec, layer.params) > 1       # s = 1, g = 1, C = 1: dt_max = 2/5
    changes = StabilityGuard(safety=0.9, dense_limit=dense_limit, power_iterations=300).apply(model)
    assert len(changes) == 1 and changes[0]["old_dt"] == 0.9
    assert layer.spec.dt == pytest.approx(0.9 * 0.4, rel=2e-2)
    assert spectral_radius(layer.spec, layer.params) <= 1
    assert StabilityGuard().apply(model) == []


_NAN, _INF = float("nan"), float("inf")
_P = {"w": np.zeros(3)}
_BAD_HYPERPARAMETERS = [
    (lambda v: SGD(_P, lr=v), "lr", [_NAN, _INF, 0.0, -1.0, "0.1"]),
    (lambda v: SGD(_P, momentum=v), "momentum", [_NAN, _INF, 1.0, -0.1]),
    (lambda v: SGD(_P, nesterov=v), "nesterov", ["yes", 1.5]),
    (lambda v: Adam(_P, betas=v), "betas", [(0.9,), 0.9, "ab"]),
    (lambda v: Adam(_P, betas=(v, 0.999)), r"betas\[0\]", [_NAN, 1.0, -0.5]),
    (lambda v: Adam(_P, betas=(0.9, v)), r"betas\[1\]", [_INF, 1.0]),
    (lambda v: Adam(_P, eps=v), "eps", [_NAN, 0.0, -1e-8]),
    (lambda v: Adam(_P, weight_decay=v), "weight_decay", [_NAN, _INF, -1e-3]),
    (lambda v: AdamW(_P, weight_decay=v), "weight_decay", [_NAN, _INF, -1e-3]),
    (lambda v: AdamW(_P, exclude=v), "exclude", ["b", (1,)]),
    (lambda v: StepDecay(v, step_size=10), "lr", [_NAN, 0.0]),
    (lambda v: StepDecay(1.0, step_size=v), "step_size", [0, 2.5]),
    (lambda v: StepDecay(1.0, step_size=10, gamma=v), "gamma", [_NAN, _INF, 0.0, 1.5]),
    (lambda v: CosineWarmup(1.0, total_steps=v), "total_steps", [0, _NAN]),
    (lambda v: CosineWarmup(1.0, total_steps=10, warmup_steps=v), "warmup_steps", [-1, 2.5, 10, _NAN]),
    (lambda v: CosineWarmup(1.0, total_steps=10, min_lr=v), "min_lr", [_NAN, -0.1, 1.5]),
    (lambda v: make_schedule(v), "schedule", [{"kind": "linear"}, {"kind": "step", "lr": 1.0},
                                              {"kind": "step", "lr": 1.0, "step_size": 2, "decay": 0.5}, "step"]),
    (lambda v: clip_by_global_norm({"w": np.ones(2)}, v), "max_norm", [_NAN, 0.0, -1.0]),
    (lambda v: conductance_penalty(KINN(2, [], 2), v), "strength", [_NAN, _INF, -1.0]),
    (lambda v: StabilityGuard(safety=v), "safety", [_NAN, 0.0, 1.0]),
    (lambda v: StabilityGuard(margin=v), "margin", [_NAN, _INF, -1e-9]),
    (lambda v: StabilityGuard(dense_limit=v), "dense_limit", [-1, 2.5]),
    (lambda v: StabilityGuard(power_iterations=v), "power_iterations", [0, 10.0]),
    (lambda v: StabilityGuard(on_unstable=v), "on_unstable", ["ignore", True]),
]


@pytest.mark.parametrize("make, name, values", _BAD_HYPERPARAMETERS, ids=[c[1] for c in _BAD_HYPERPARAMETERS])
def test_hyperparameters_are_checked_at_construction(make, name, values):
    """NaN, infinite, out-of-range or ill-typed settings raise a ValueError naming the argument."""
    for value in values:
        with pytest.raises(ValueError, match=name):
            make(value)


def test_hyperparameters_at_the_edges_of_their_ranges_are_accepted():
    SGD(_P, momentum=0.0)
    Adam(_P, betas=(0.0, 0.0), weight_decay=0.0)
    StepDecay(1.0, step_size=1, gamma=1.0)
    CosineWarmup(1.0, total_steps=10, warmup_steps=9, min_lr=1.0)
    StabilityGuard(dense_limit=0, margin=0.0, on_unstable="warn")
    assert conductance_penalty(KINN(2, [], 2), 0.0)[0] == 0.0
