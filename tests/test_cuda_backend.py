"""The ``cuda`` backend against the NumPy reference.

In CI the kernels run on numba's CUDA simulator (``tests/conftest.py`` sets ``NUMBA_ENABLE_CUDASIM=1``)
with small tunables, so that multi-block paths run on tiny inputs; with ``KINN_REF_REAL_CUDA=1`` the same
tests run on a GPU, where the ``small_config`` cases repeat a subset with the simulator's tunables.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import kinn_ref as kr
from helpers import (COUPLING_CASES, check_backward_refuses_mismatches, check_tape_owns_its_inputs, make_case,
                     option_matrix, rel_error)
from helpers import CUDA_TOLERANCE as TOLERANCE

pytestmark = pytest.mark.skipif("cuda" not in kr.available_backends(),
                                reason="cuda backend not usable here (no GPU, no simulator)")

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def assert_close(actual, expected, dtype, what):
    err = rel_error(actual, expected)
    assert err <= TOLERANCE[np.dtype(dtype)], f"{what}: relative error {err:.3e}"


def check_against_reference(spec, params, x, V0, checkpoint_every=None, seed=1):
    """Forward and backward on cuda and numpy in the dtype of ``params``; returns the cuda tape and grads."""
    dtype = params["W"].dtype
    y, tape = kr.forward(spec, params, x, V0, backend="cuda", checkpoint_every=checkpoint_every)
    y_ref, tape_ref = kr.forward(spec, params, x, V0, backend="numpy")
    assert tape.backend == "cuda"
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert_close(y, y_ref, dtype, "y")
    w = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    grads = kr.backward(spec, params, tape, w)
    grads_ref = kr.backward(spec, params, tape_ref, w)
    assert set(grads) == set(grads_ref)
    for k in grads_ref:
        assert grads[k].dtype == dtype and grads[k].shape == grads_ref[k].shape, k
        assert_close(grads[k], grads_ref[k], dtype, k)
    assert np.all(grads["beta"][0] == 0)
    return tape, grads


# A representative set for the default run: every coupling, integrator, readout and parameterization,
# both input kinds, return_sequences, with and without V0, every kernel family.
# (coupling, integrator, readout, param, order, sequence, return_sequences, with_V0, batch)
DEFAULT_CASES = [
    ("none", "euler", "last", "positive", 2, False, False, True, 3),
    ("none", "euler", "derivatives", "raw", 3, True, True, False, 3),
    ("none", "expeuler", "last", "positive", 2, False, False, True, 5),
    ("none", "expeuler", "cells", "positive", 2, True, True, True, 3),
    ("none", "expeuler", "derivatives", "raw", 2, False, False, False, 3),
    ("none", "implicit", "last", "raw", 2, True, False, True, 3),
    ("none", "implicit", "derivatives", "positive", 2, False, True, True, 3),
    ("none", "rk4", "cells", "positive", 1, False, False, True, 3),
    ("none", "rk4", "derivatives", "positive", 2, True, True, True, 3),
    ("none", "trapezoidal", "cells", "raw", 3, True, False, True, 3),
    ("none", "trapezoidal", "derivatives", "positive", 2, False, True, False, 3),
    ("dense", "expeuler", "last", "positive", 1, False, False, True, 5),      # persistent
    ("dense", "euler", "cells", "raw", 1, True, True, False, 5),              # persistent
    ("kirchhoff", "expeuler", "last", "raw", 1, True, True, True, 3),         # persistent
    ("dense", "expeuler", "cells", "positive", 2, False, False, True, 3),
    ("dense", "implicit", "last", "positive", 2, False, False, True, 2),
    ("kirchhoff", "euler", "derivatives", "positive", 2, False, False, True, 2),
    ("grid1d-periodic", "expeuler", "last", "positive", 2, False, False, True, 2),
    ("grid2d-neumann", "euler", "cells", "raw", 1, True, True, True, 2),
    ("dense", "trapezoidal", "derivatives", "raw", 2, True, False, True, 2),
    ("grid1d-neumann", "trapezoidal", "cells", "positive", 2, False, True, True, 2),
]
SLOW_CASES = [
    ("dense", "euler", "derivatives", "raw", 2, True, True, True, 3),
    ("dense", "rk4", "last", "positive", 2, False, False, True, 2),
    ("kirchhoff", "implicit", "cells", "raw", 2, True, False, True, 2),
    ("grid1d-dirichlet", "implicit", "last", "positive", 2, False, False, True, 2),
    ("grid2d-periodic", "implicit", "cells", "positive", 1, False, False, False, 2),
    ("grid1d-periodic", "rk4", "derivatives", "positive", 2, False, False, True, 2),
    ("kirchhoff", "trapezoidal", "last", "positive", 2, True, True, False, 2),
    ("grid2d-periodic", "trapezoidal", "derivatives", "raw", 2, True, False, True, 2),
    ("grid1d-dirichlet", "trapezoidal", "last", "positive", 1, False, False, True, 2),
]


@pytest.mark.parametrize("coupling,integrator,readout,param,order,sequence,return_sequences,with_V0,batch",
                         DEFAULT_CASES + [pytest.param(*c, marks=pytest.mark.slow) for c in SLOW_CASES])
def test_matches_reference(coupling, integrator, readout, param, order, sequence, return_sequences, with_V0,
                           batch):
    spec, params, x, V0 = make_case(coupling, integrator, readout, param, order=order, sequence=sequence,
                                    return_sequences=return_sequences, with_V0=with_V0, batch=batch, n_steps=3)
    check_against_reference(spec, params, x, V0)


@pytest.mark.parametrize("coupling,integrator,readout,order", [
    ("none", "expeuler", "last", 2), ("none", "rk4", "derivatives", 2), ("dense", "expeuler", "last", 1),
    ("dense", "implicit", "cells", 2), ("grid1d-periodic", "expeuler", "last", 1),
    pytest.param("kirchhoff", "euler", "derivatives", 2, marks=pytest.mark.slow),
    pytest.param("grid2d-neumann", "implicit", "last", 1, marks=pytest.mark.slow)])
def test_float32_matches_reference(coupling, integrator, readout, order):
    spec, params, x, V0 = make_case(coupling, integrator, readout, order=order, dtype=np.float32, n_steps=3,
                                    batch=2)
    check_against_reference(spec, params, x, V0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("coupling,integrator,readout,param", option_matrix("cuda"))
def test_option_matrix_matches_reference(coupling, integrator, readout, param, dtype):
    for order in (1, 2):
        spec, params, x, V0 = make_case(coupling, integrator, readout, param, order=order, dtype=dtype,
                                        sequence=order == 2, return_sequences=order == 2, n_steps=3, batch=3)
        check_against_reference(spec, params, x, V0)


@pytest.mark.slow
@pytest.mark.parametrize("coupling", list(COUPLING_CASES))
def test_longer_runs_match_reference(coupling):
    spec, params, x, V0 = make_case(coupling, "expeuler", "cells", order=3, n_steps=23, batch=4, dt=0.05)
    check_against_reference(spec, params, x, V0)


@pytest.mark.parametrize("coupling,integrator,order,every", [
    ("none", "expeuler", 2, 1), ("none", "implicit", 3, 2), ("none", "rk4", 2, 5), ("dense", "euler", 1, 2),
    ("dense", "expeuler", 1, 5), ("grid1d-neumann", "expeuler", 1, 2),
    pytest.param("kirchhoff", "rk4", 2, 3, marks=pytest.mark.slow),
    pytest.param("grid1d-neumann", "expeuler", 2, 5, marks=pytest.mark.slow)])
def test_checkpointed_backward_equals_stored(coupling, integrator, order, every):
    """Checkpoints every m steps give the results of the default tape (bitwise on the simulator; the
    fused ``none`` kernels recompute inside another kernel on a GPU, where contraction may differ)."""
    spec, params, x, V0 = make_case(coupling, integrator, "cells", order=order, sequence=True,
                                    return_sequences=True, n_steps=7, seed=5, batch=2)
    tape, grads = check_against_reference(spec, params, x, V0)
    tape_c, grads_c = check_against_reference(spec, params, x, V0, checkpoint_every=every)
    assert tape_c.interval == every
    for k in grads:
        if SIMULATOR or tape.family != "cell":
            np.testing.assert_array_equal(grads[k], grads_c[k], err_msg=k)
        else:
            assert rel_error(grads_c[k], grads[k]) <= 1e-14, k


@pytest.mark.parametrize("sequence", [False, True])
def test_none_with_many_input_features_projects_before_the_kernels(sequence):
    """Above ``FUSED_PROJECTION_MAX_D`` input features the fused kernels read a projected current buffer."""
    from kinn_ref.backends.cuda_backend.runtime import config
    spec, params, x, V0 = make_case("none", "expeuler", "cells", in_features=config.FUSED_PROJECTION_MAX_D + 1,
                                    sequence=sequence, batch=2, n_steps=3)
    tape, _ = check_against_reference(spec, params, x, V0)
    assert tape.aux.currents is not None


@pytest.mark.parametrize("sequence", [False, True])
def test_none_spans_longer_than_one_launch(monkeypatch, sequence):
    """T beyond one backward launch of the fused kernels: several spans, and a span split into sub-spans."""
    from kinn_ref.backends.cuda_backend.runtime import config
    from kinn_ref.backends.cuda_backend.families.cell_kernels import span_capacity
    monkeypatch.setattr(config, "CELL_STATIC_MAX_T", 0)  # static inputs too run on the span kernels
    cap = span_capacity()
    spec, params, x, V0 = make_case("none", "rk4", "last", order=2, n_steps=2 * cap + 3, batch=2,
                                    sequence=sequence)
    tape, _ = check_against_reference(spec, params, x, V0)
    assert not tape.aux.static
    check_against_reference(spec, params, x, V0, checkpoint_every=cap + 2)


# (integrator, readout, order, return_sequences, with_V0, n_steps, dtype)
STATIC_CASES = [
    ("expeuler", "last", 2, False, False, 7, np.float64),
    ("euler", "cells", 3, True, True, 4, np.float64),
    ("expeuler", "derivatives", 2, True, False, 5, np.float32),
    ("implicit", "last", 2, False, True, 3, np.float64),
    ("rk4", "derivatives", 2, False, True, 1, np.float64),
    ("trapezoidal", "cells", 3, False, True, 5, np.float64),
    pytest.param("implicit", "cells", 1, True, False, 6, np.float32, marks=pytest.mark.slow),
    pytest.param("rk4", "last", 3, True, True, 9, np.float64, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("integrator,readout,order,return_sequences,with_V0,n_steps,dtype", STATIC_CASES)
def test_static_input_kernels_built_for_T(monkeypatch, integrator, readout, order, return_sequences, with_V0,
                                          n_steps, dtype):
    """Static input, at most ``CELL_STATIC_MAX_T`` steps: the kernels of ``cell_static`` (all steps written
    out, segments of ``CELL_STATIC_SEGMENT``, a ragged last segment), and none with ``checkpoint_every``.
    RK4 and the ``derivatives`` readout, which run on the span kernels by default, are let onto them through
    the tunables."""
    from kinn_ref.backends.cuda_backend.runtime import config
    from kinn_ref.backends.cuda_backend.integrators import UPDATE_KINDS
    monkeypatch.setattr(config, "CELL_STATIC_INTEGRATORS", UPDATE_KINDS)
    monkeypatch.setattr(config, "CELL_STATIC_READOUTS", ("last", "cells", "derivatives"))
    spec, params, x, V0 = make_case("none", integrator, readout, order=order, return_sequences=return_sequences,
                                    with_V0=with_V0, n_steps=n_steps, batch=3, dtype=dtype, seed=n_steps)
    tape, grads = check_against_reference(spec, params, x, V0)
    assert tape.aux.static and list(tape.states) == [0]
    tape_c, grads_c = check_against_reference(spec, params, x, V0, checkpoint_every=2)
    assert not tape_c.aux.static and n_steps in tape_c.states
    for k in grads:
        assert rel_error(grads_c[k], grads[k]) <= TOLERANCE[np.dtype(dtype)], k


def test_an_integrator_the_backend_lacks_is_refused_by_name(monkeypatch):
    """A backend registered with fewer integrators than the registry's (as cuda was before it had the
    trapezoidal rule): an explicit choice names what it lacks (a BackendUnsupportedError, both a ValueError and
    a NotImplementedError) before any kernel runs, and "auto" passes over it."""
    from kinn_ref import backends
    from kinn_ref.errors import BackendUnsupportedError
    monkeypatch.setitem(backends._REGISTRY["cuda"], "integrators", ("euler", "expeuler", "implicit", "rk4"))
    spec, params, x, V0 = make_case("none", "trapezoidal", "last", n_steps=2, batch=2)
    with pytest.raises(BackendUnsupportedError, match="integrator='trapezoidal'") as info:
        kr.forward(spec, params, x, V0, backend="cuda")
    assert isinstance(info.value, ValueError) and isinstance(info.value, NotImplementedError)
    with pytest.raises(BackendUnsupportedError, match="numba backends implement every integrator"):
        kr.KINNLayer(2, 3, backend="cuda", integrator="trapezoidal")
    assert backends.resolve("auto", spec) != "cuda"
    assert backends.resolve("auto", spec.replace(integrator="implicit")) in ("cuda", "numba", "numpy")
    assert backends.implemented_integrators("cuda") == ("euler", "expeuler", "implicit", "rk4")
    monkeypatch.undo()
    assert backends.implemented_integrators("cuda") == kr.spec.INTEGRATORS


def test_update_kinds_are_read_from_the_method_objects():
    """Every registered integrator maps to one per-node update of the kernels, from its method's attributes:
    the one-stage explicit methods share the linear update, the solved ones differ by capacitance scale."""
    from kinn_ref.backends.cuda_backend.integrators import UPDATE_KINDS, update_kind
    kinds = {name: update_kind(name) for name in kr.spec.INTEGRATORS}
    assert set(kinds.values()) <= set(UPDATE_KINDS)
    assert kinds == {"euler": "linear", "expeuler": "linear", "implicit": "implicit", "rk4": "rk4",
                     "trapezoidal": "trapezoidal"}


@pytest.mark.parametrize("integrator,readout,static", [
    ("euler", "last", True), ("expeuler", "cells", True), ("implicit", "last", True), ("rk4", "last", False),
    ("trapezoidal", "cells", True),
    ("expeuler", "derivatives", False)])
def test_static_kernels_are_chosen_by_integrator_and_readout(integrator, readout, static):
    """By default a short static input runs on ``cell_static`` for the single-stage integrators read out as
    states only."""
    spec, params, x, V0 = make_case("none", integrator, readout, order=2, n_steps=2, batch=2)
    _, tape = kr.forward(spec, params, x, V0, backend="cuda")
    assert tape.aux.static is static


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_static_kernels_with_the_most_fused_input_features(dtype):
    """D = FUSED_PROJECTION_MAX_D: the projection's gradient sums outnumber the cells' (two block reductions of
    different sizes in one kernel)."""
    from kinn_ref.backends.cuda_backend.runtime import config
    spec, params, x, V0 = make_case("none", "expeuler", "last", order=2, in_features=config.FUSED_PROJECTION_MAX_D,
                                    n_steps=3, batch=3, dtype=dtype)
    tape, _ = check_against_reference(spec, params, x, V0)
    assert tape.aux.static


def test_static_backward_source_writes_every_step_out():
    from kinn_ref.backends.cuda_backend.families.cell_static import backward_source, segments
    assert segments(7, 3) == [(0, 3), (3, 3), (6, 1)]
    src = backward_source(7, 3, ret_seq=False)
    assert src.count("step_vjp(") == 7 and src.count("readout_vjp(") == 1
    assert "CK2" in src and "CK3" not in src and "S3 " in src and "S4 " not in src
    assert backward_source(7, 3, ret_seq=True).count("readout_vjp(") == 7


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the simulator computes the overflow in NumPy
@pytest.mark.parametrize("coupling,order", [("none", 2), ("dense", 1), ("dense", 2), ("grid1d-periodic", 2)])
def test_nonfinite_state_is_reported_like_the_reference(coupling, order):
    spec, params, x, V0 = make_case(coupling, "euler", "last", param="raw", order=order, n_steps=6)
    params["g_raw"][:] = -1e7    # every cell grows by itself: the pre-check warns and the pass runs
    V0[1, order - 1, 0] = 1e300  # overflows after a step or two, in the last cell first
    _, tape_ref = kr.forward(spec, params, x, V0, on_nonfinite="flag")
    y, tape = kr.forward(spec, params, x, V0, backend="cuda", on_nonfinite="flag")
    assert tape_ref.nonfinite is not None
    assert tape.nonfinite == tape_ref.nonfinite
    with pytest.raises(kr.NonFiniteStateError) as info:
        kr.forward(spec, params, x, V0, backend="cuda")
    assert (info.value.step, info.value.cell) == tape_ref.nonfinite
    with pytest.raises(ValueError, match="non-finite"):
        kr.backward(spec, params, tape, np.ones_like(y))


def test_backward_twice_gives_same_result():
    spec, params, x, V0 = make_case("dense", "expeuler", "last", batch=2, n_steps=3)
    y, tape = kr.forward(spec, params, x, V0, backend="cuda")
    g1 = kr.backward(spec, params, tape, np.ones_like(y))
    g2 = kr.backward(spec, params, tape, np.ones_like(y))
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k], err_msg=k)


def test_public_boundary_errors():
    spec, params, x, V0 = make_case("none", "expeuler", "last")
    with pytest.raises(ValueError, match="x must"):
        kr.forward(spec, params, x[:, :2], V0, backend="cuda")
    with pytest.raises(ValueError, match="V0"):
        kr.forward(spec, params, x, V0[:, :1], backend="cuda")
    with pytest.raises(ValueError, match="dtype"):
        kr.forward(spec, params, x.astype(np.float32), V0, backend="cuda")
    raw = spec.replace(param="raw")
    bad = dict(params, C_raw=-np.abs(params["C_raw"]))
    with pytest.raises(ValueError, match="C_raw"):
        kr.forward(raw, bad, x, V0, backend="cuda")
    y, tape = kr.forward(spec, params, x, V0, backend="cuda")
    with pytest.raises(ValueError, match="dy"):
        kr.backward(spec, params, tape, np.ones((1, 1)))


def test_the_tape_keeps_its_own_copy_of_x_and_V0():
    check_tape_owns_its_inputs("cuda")


def test_backward_refuses_another_spec_changed_params_and_another_dtype():
    check_backward_refuses_mismatches("cuda")


# ---- tunables: multi-block paths on the simulator, and the simulator's tunables on a GPU

def test_small_inputs_still_span_several_blocks():
    from kinn_ref.backends.cuda_backend.runtime import config
    from kinn_ref.backends.cuda_backend.runtime.device import node_grid
    if not SIMULATOR:
        pytest.skip("the default GPU tunables cover tiny inputs with one block")
    (gx, gy), _ = node_grid(3, 3)  # the typical case: N = 3 nodes, B = 3 rows
    assert gx > 1 and gy > 1
    assert config.CELL_SEGMENT * config.CELL_CHECKPOINTS < 7 < 2 * config.GEMM_TILE[8][0]


@pytest.fixture
def small_config(monkeypatch):
    """The simulator's tunables (multi-block paths on tiny inputs), also on a GPU."""
    from kinn_ref.backends.cuda_backend.runtime import config
    for name, value in {"NODE_BLOCK": (2, 2), "THREADS_PER_SM": 32, "CELL_SEGMENT": 2, "CELL_CHECKPOINTS": 2,
                        "CELL_STATIC_SEGMENT": 2,
                        "GEMM_TILE": {4: (4, 4, 2, 2, 2), 8: (4, 4, 2, 2, 2)}, "GEMM_SPLIT_MIN": 4,
                        "GEMM_NARROW_TILE": {4: (4, 2, 2, 2, 1), 8: (4, 2, 2, 2, 1)},
                        "FLAT_BLOCK": 4, "PERSISTENT_GROUPS": 2, "PERSISTENT_ROWS": 1,
                        "INVERSE_BLOCK": 4}.items():
        monkeypatch.setattr(config, name, value)


@pytest.mark.parametrize("coupling,integrator,order", [
    ("none", "rk4", 2), ("dense", "expeuler", 1), ("dense", "implicit", 2), ("kirchhoff", "expeuler", 2),
    ("grid2d-neumann", "implicit", 1), ("grid1d-dirichlet", "euler", 2)])
def test_small_tunables_match_reference(small_config, coupling, integrator, order):
    if SIMULATOR:
        pytest.skip("the simulator runs every test with these tunables")
    spec, params, x, V0 = make_case(coupling, integrator, "derivatives" if order == 2 else "last", order=order,
                                    n_steps=7, batch=5, n_nodes=5)
    check_against_reference(spec, params, x, V0)


# ---- the device-resident API

def _device(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


@pytest.mark.parametrize("coupling,order", [("none", 2), ("dense", 1), ("grid1d-periodic", 1)])
def test_device_api_matches_host_api(coupling, order):
    from kinn_ref.backends.cuda_backend import backend
    from kinn_ref.backends.cuda_backend.runtime.device import is_device_array
    spec, params, x, V0 = make_case(coupling, "expeuler", "cells", order=order, batch=2, n_steps=3)
    dparams = backend.to_device(params)
    y_d, tape = backend.forward_device(spec, dparams, _device(x), _device(V0))
    assert is_device_array(y_d) and tape.nonfinite is None
    w = np.random.default_rng(0).standard_normal(y_d.shape)
    grads_d = backend.backward_device(spec, dparams, tape, _device(w))
    y, tape_h = kr.forward(spec, params, x, V0, backend="cuda")
    grads = kr.backward(spec, params, tape_h, w)
    np.testing.assert_array_equal(y_d.copy_to_host(), y)
    for k in grads:
        assert is_device_array(grads_d[k]), k
        np.testing.assert_array_equal(grads_d[k].copy_to_host(), grads[k], err_msg=k)


@pytest.mark.parametrize("coupling,order", [("none", 2), ("dense", 1)])
def test_device_tape_keeps_its_own_copies_of_x_V0_and_dparams(coupling, order):
    """Zeroing the caller's device x, V0 and parameters after forward_device leaves the gradients as they were."""
    from kinn_ref.backends.cuda_backend import backend
    spec, params, x, V0 = make_case(coupling, "expeuler", "cells", order=order, batch=2, n_steps=3, sequence=True,
                                    return_sequences=True)
    w = np.random.default_rng(0).standard_normal((2, 3, spec.readout_width))
    y, tape_h = kr.forward(spec, params, x, V0, backend="cuda")
    expected = kr.backward(spec, params, tape_h, w)
    dparams, dx, dV0 = backend.to_device(params), _device(x), _device(V0)
    y_d, tape = backend.forward_device(spec, dparams, dx, dV0)
    for a in [dx, dV0, *dparams.values()]:
        a.copy_to_device(np.zeros(a.shape, a.dtype))
    grads = backend.backward_device(spec, dparams, tape, _device(w))
    np.testing.assert_array_equal(y_d.copy_to_host(), y)
    for k in expected:
        np.testing.assert_array_equal(grads[k].copy_to_host(), expected[k], err_msg=k)


def test_device_backward_refuses_another_spec_and_another_dtype():
    from kinn_ref.backends.cuda_backend import backend
    spec, params, x, V0 = make_case("dense", "expeuler", "last", order=1, batch=2, n_steps=3)
    dparams = backend.to_device(params)
    y, tape = backend.forward_device(spec, dparams, _device(x), _device(V0))
    dy = _device(np.ones(y.shape))
    with pytest.raises(kr.TapeMismatchError, match="n_steps is 4 here, 3 in the forward pass") as info:
        backend.backward_device(spec.replace(n_steps=4), dparams, tape, dy)
    assert info.value.argument == "spec"
    d32 = backend.to_device({k: v.astype(np.float32) for k, v in params.items()})
    with pytest.raises(kr.TapeMismatchError, match="dparams dtype float32 vs tape float64") as info:
        backend.backward_device(spec, d32, tape, _device(np.ones(y.shape, np.float32)))
    assert info.value.argument == "dparams"
    with pytest.raises(ValueError, match="from forward_device"):
        kr.backward(spec, params, tape, np.ones(y.shape))


def test_device_api_rejects_host_arrays():
    from kinn_ref.backends.cuda_backend import backend
    spec, params, x, V0 = make_case("none", "expeuler", "last")
    with pytest.raises(ValueError, match="dparams"):
        backend.forward_device(spec, params, _device(x))
    with pytest.raises(ValueError, match="x must"):
        backend.forward_device(spec, backend.to_device(params), x)


@pytest.mark.parametrize("coupling,order", [("none", 2), ("dense", 1),
                                            pytest.param("kirchhoff", 2, marks=pytest.mark.slow),
                                            pytest.param("grid1d-neumann", 1, marks=pytest.mark.slow)])
def test_training_step_makes_no_host_transfer(coupling, order):
    from kinn_ref.backends.cuda_backend import backend
    from kinn_ref.backends.cuda_backend.training import step as training
    from kinn_ref.backends.cuda_backend.runtime.device import is_device_array
    from kinn_ref.backends.cuda_backend.diagnostics.transfers import count_transfers
    spec, params, x, _ = make_case(coupling, "expeuler", "last", order=order, dtype=np.float32, batch=2,
                                   n_steps=3)
    dparams = backend.to_device(params)
    before = {k: id(v) for k, v in dparams.items()}
    dx = _device(x)
    target = _device(np.ones((x.shape[0], spec.readout_width), np.float32))
    opt = training.DeviceAdam(dparams, lr=1e-2)
    first = training.train_step(spec, dparams, dx, target, opt)  # first call may upload cached constants
    with count_transfers() as count:
        for _ in range(3):
            loss = training.train_step(spec, dparams, dx, target, opt)
    assert count.total == 0, count.events
    assert all(is_device_array(v) and id(v) == before[k] for k, v in dparams.items())
    assert loss.copy_to_host()[0] < first.copy_to_host()[0]
    with count_transfers() as count:  # the counter sees copies
        loss.copy_to_host()
    assert count.to_host == 1


def test_device_loss_and_optimizers_match_host_twins():
    from kinn_ref.backends.cuda_backend import backend
    from kinn_ref.backends.cuda_backend.training import step as training
    from kinn_ref.training import losses, optimizers
    rng = np.random.default_rng(0)
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    loss_d, dy_d = training.mse_loss(_device(y), _device(t))
    loss, dy = losses.mse(y, t)
    assert abs(loss_d.copy_to_host()[0] - loss) <= 1e-14 * loss
    np.testing.assert_allclose(dy_d.copy_to_host(), dy, rtol=1e-14)
    params = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal(5)}
    for host_cls, dev_cls, kw in [(optimizers.SGD, training.DeviceSGD, {"lr": 0.1, "momentum": 0.9,
                                                                        "nesterov": True}),
                                  (optimizers.Adam, training.DeviceAdam, {"lr": 0.1, "weight_decay": 0.01})]:
        host = {k: v.copy() for k, v in params.items()}
        dev = backend.to_device(params)
        opt_h, opt_d = host_cls(host, **kw), dev_cls(dev, **kw)
        for step in range(3):
            g = {k: rng.standard_normal(v.shape) for k, v in params.items()}
            opt_h.step(g)
            opt_d.step(backend.to_device(g))
        for k in params:
            np.testing.assert_allclose(dev[k].copy_to_host(), host[k], rtol=1e-13, err_msg=f"{dev_cls.__name__} {k}")


# ---- the registry

def test_registered_and_never_picked_automatically_on_the_simulator():
    from kinn_ref.backends import resolve
    assert "cuda" in kr.registered_backends()
    if SIMULATOR:
        assert "cuda" in kr.available_backends()
        assert resolve("auto") != "cuda"


def test_without_gpu_or_simulator_cuda_is_refused_with_the_reason():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = ("import numpy as np, kinn_ref as kr\n"
            "from kinn_ref.backends import unavailable_reason, resolve\n"
            "reason = unavailable_reason('cuda')\n"
            "if reason is None: print('GPU'); raise SystemExit\n"
            "assert resolve('auto') != 'cuda'\n"
            "spec = kr.LayerSpec(2, 3)\n"
            "try:\n"
            "    kr.forward(spec, kr.init_params(spec), np.zeros((1, 2)), backend='cuda')\n"
            "except ValueError as exc:\n"
            "    print('REFUSED', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("GPU"):
        pytest.skip("a GPU works here")
    assert "REFUSED backend 'cuda' is not usable here" in out.stdout
    # the reason is the probe's own finding: importing the backend (and installing its memory pool) works
    assert "no CUDA GPU or driver found" in out.stdout, out.stdout
    assert "memory pool not installed" not in out.stderr, out.stderr


def test_inputs_with_a_stride_0_axis_are_uploaded_with_canonical_strides():
    """numpy calls ``u[..., None]`` C-contiguous (stride 0 on the new axis); numba-cuda's device arrays do not
    and cannot reshape it, so the host API copies such inputs before the upload."""
    from kinn_ref.backends.cuda_backend.backend import c_strided
    u = np.random.default_rng(0).standard_normal((3, 5))[..., None]
    assert u.flags.c_contiguous and u.strides[-1] == 0
    fixed = c_strided(u)
    assert fixed.strides == (40, 8, 8) and np.array_equal(fixed, u)
    plain = np.ones((3, 5))
    assert c_strided(plain) is plain
    spec = kr.LayerSpec(1, 2, coupling="none", integrator="expeuler", dt=0.1, n_steps=5, return_sequences=True)
    params = kr.init_params(spec, seed=0)
    y, tape = kr.forward(spec, params, u, backend="cuda")
    grads = kr.backward(spec, params, tape, np.ones_like(y))
    y_ref, tape_ref = kr.forward(spec, params, u)
    grads_ref = kr.backward(spec, params, tape_ref, np.ones_like(y_ref))
    assert rel_error(y, y_ref) < 1e-12 and rel_error(grads["x"], grads_ref["x"]) < 1e-12
