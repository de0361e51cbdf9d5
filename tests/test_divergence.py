"""The divergence pre-check of forward (kinn_ref/divergence.py): a dt outside the stable region is refused
before the pass, or flagged; a circuit that grows by itself warns once; stable passes are untouched."""
import math
import warnings

import numpy as np
import pytest

import kinn_ref as kr
from helpers import COUPLING_CASES, coupling_kind, default_kernel
from kinn_ref import divergence
from kinn_ref.analysis.stability import layer_dt_max
from kinn_ref.errors import UnstableStepWarning

COUPLINGS = ("none", "dense", "kirchhoff", "grid1d-dirichlet")
CUDA = "cuda" in kr.available_backends()


def _case(coupling, integrator="euler", factor=3.0, n_steps=20, batch=2, **options):
    """A layer on a kernel the default suite compiles anyway, at ``factor`` times its largest stable dt."""
    case = COUPLING_CASES[coupling]
    readout, dtype = default_kernel(integrator, coupling_kind(case["coupling"]))
    spec = kr.LayerSpec(2, 3, order=2, integrator=integrator, readout=readout, n_steps=n_steps, dt=0.1,
                        **dict(case, **options))
    params = kr.init_params(spec, seed=1, dtype=dtype)
    dt_max = layer_dt_max(spec, params)
    x = np.random.default_rng(0).standard_normal(spec.input_shape(batch)).astype(dtype)
    return spec.replace(dt=factor * dt_max), params, x, dt_max


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_a_dt_beyond_the_stable_region_raises_with_the_numbers(coupling, backend):
    spec, params, x, dt_max = _case(coupling)
    with pytest.raises(kr.DivergentStepError) as info:
        kr.forward(spec, params, x, backend=backend)
    err = info.value
    assert isinstance(err, kr.NonFiniteStateError) and isinstance(err, kr.UnstableStepError)
    assert err.dt == spec.dt and err.dt_max == pytest.approx(dt_max, rel=1e-9) and err.rho > 1
    message = str(err)
    assert f"dt={spec.dt!r}" in message and f"largest stable dt is {dt_max:.6g}" in message
    assert f"Cell {err.cell} " in message and f"by step {err.step}" in message
    assert err.step == math.ceil(math.log(divergence.GROWTH) / math.log(err.rho)) - 1


def test_uncoupled_layers_use_the_closed_form_per_node():
    spec, params, x, _ = _case("none", "rk4", factor=1.5)
    p = {k: v.astype(np.float64) for k, v in params.items()}
    C = spec.c_min + np.logaddexp(0, p["C_raw"])
    g = np.logaddexp(0, p["g_raw"])
    z = -spec.dt * g / C
    R = np.abs(1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 24)
    with pytest.raises(kr.DivergentStepError) as info:
        kr.forward(spec, params, x)
    assert info.value.dt_max == pytest.approx(2.785293563405282 * np.min(C / g), rel=1e-6)
    assert info.value.cell == int(np.argmax(R.max(axis=1) > 1)) and info.value.rho == pytest.approx(
        R[info.value.cell].max(), rel=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("coupling", ["none", "kirchhoff"])
def test_flag_records_the_pass_and_backward_refuses_it(coupling, backend):
    spec, params, x, dt_max = _case(coupling)
    y, tape = kr.forward(spec, params, x, backend=backend, on_nonfinite="flag")
    record = tape.unstable
    assert record is not None and record.dt == spec.dt and record.dt_max == pytest.approx(dt_max, rel=1e-9)
    assert record.integrator == "euler" and record.rho > 1
    assert "unstable(dt, dt_max)" in repr(tape)
    with pytest.raises(ValueError, match=rf"outside the stable region of 'euler' \(largest stable dt "
                                         rf"{dt_max:.6g}, cell {record.cell}"):
        kr.backward(spec, params, tape, np.ones_like(y))
    with pytest.raises(kr.DivergentStepError) as info:
        kr.forward(spec, params, x, backend=backend)
    assert (info.value.step, info.value.cell, info.value.rho) == (record.step, record.cell, record.rho)


@pytest.mark.skipif(not CUDA, reason="cuda backend not usable here (no GPU, no simulator)")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes the overflow in NumPy
def test_cuda_refuses_and_flags_like_the_reference():
    spec, params, x, dt_max = _case("dense", factor=1e4, n_steps=2, batch=1)   # diverges by step 1
    with pytest.raises(kr.DivergentStepError) as info:
        kr.forward(spec, params, x, backend="cuda")
    assert info.value.dt_max == pytest.approx(dt_max, rel=1e-9)
    y, tape = kr.forward(spec, params, x, backend="cuda", on_nonfinite="flag")
    _, tape_ref = kr.forward(spec, params, x, on_nonfinite="flag")
    assert tape.unstable == tape_ref.unstable and tape.unstable is not None
    with pytest.raises(ValueError, match="outside the stable region"):
        kr.backward(spec, params, tape, np.ones_like(y))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_pass_shorter_than_the_growth_runs(backend):
    spec, params, x, dt_max = _case("dense", factor=1.05, n_steps=3)
    y, tape = kr.forward(spec, params, x, backend=backend)
    assert tape.unstable is None and np.all(np.isfinite(y))
    long = spec.replace(n_steps=10_000)
    with pytest.raises(kr.DivergentStepError) as info:
        kr.forward(long, params, x, backend=backend)
    assert 3 <= info.value.step < 10_000


@pytest.mark.parametrize("coupling", ["dense", "grid1d-dirichlet"])
def test_implicit_never_triggers(coupling):
    spec, params, x, _ = _case(coupling, "euler")
    spec = spec.replace(integrator="implicit", dt=1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, tape = kr.forward(spec, params, x)
    assert tape.unstable is None and np.all(np.isfinite(y))


def _growing():
    spec = kr.LayerSpec(2, 3, order=2, integrator="euler", param="raw", dt=0.1, n_steps=5)
    params = kr.init_params(spec, seed=0)
    params["g_raw"][1] = -1.0                        # cell 1: dV/dt = +V/C, grows for every dt
    return spec, params, np.ones((2, 2))


def test_a_circuit_growing_by_itself_warns_once_per_parameter_values():
    divergence.clear_cache()
    spec, params, x = _growing()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            y, tape = kr.forward(spec, params, x)
        assert tape.unstable is None and np.all(np.isfinite(y))
        params["g_raw"][1] = -2.0                    # new parameter values: said again, once
        for _ in range(2):
            kr.forward(spec, params, x)
    said = [w for w in caught if issubclass(w.category, UnstableStepWarning)]
    assert len(said) == 2 and all("cell(s) 1 grows by itself" in str(w.message) for w in said)


def test_a_stable_pass_is_untouched_and_analysed_once(monkeypatch):
    divergence.clear_cache()
    spec, params, x, _ = _case("dense", factor=0.5)
    calls = []
    assess = divergence._assess
    monkeypatch.setattr(divergence, "_assess", lambda *a: calls.append(1) or assess(*a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, tape = kr.forward(spec, params, x)
        params_w = dict(params, W=params["W"] * 2)    # W and b do not enter the step map: same verdict
        kr.forward(spec, params_w, x)
        y2, _ = kr.forward(spec, params, x, on_nonfinite="flag")
    assert tape.unstable is None and len(calls) == 1
    np.testing.assert_array_equal(y, y2)
    params["g_raw"] = params["g_raw"] + 0.1          # a new parameter version is analysed again
    kr.forward(spec, params, x)
    assert len(calls) == 2


def test_a_large_dense_layer_is_estimated_first_and_analysed_only_when_unstable(monkeypatch):
    from kinn_ref import divergence
    spec = kr.LayerSpec(4, 80, order=1, coupling="dense", integrator="euler", n_steps=400, dt=0.01)
    params = kr.init_params(spec, seed=3)
    calls = []
    real = divergence._assess
    monkeypatch.setattr(divergence, "_assess", lambda s, p: calls.append(s.dt) or real(s, p))
    divergence.clear_cache()
    assert divergence.check_divergence(spec, params, "raise") is None and calls == []   # the estimate sufficed
    dt_max = layer_dt_max(spec, params)
    with pytest.raises(kr.DivergentStepError) as info:
        divergence.check_divergence(spec.replace(dt=3 * dt_max), params, "raise")
    assert calls == [3 * dt_max] and info.value.dt_max == pytest.approx(dt_max, rel=1e-6)
