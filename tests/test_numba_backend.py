"""The numba backend against the NumPy reference: outputs, every gradient, tapes, checkpoints,
thread-count determinism and non-finite handling."""
import itertools

import numpy as np
import pytest

import kinn_ref as kr
from helpers import (COUPLING_CASES, INTEGRATOR_NAMES, assert_close, coupling_kind, default_kernel, make_case,
                     on_default_kernel, option_matrix)
from kinn_ref.backends import available_backends, resolve
from kinn_ref.layers import KINNLayer
from kinn_ref.network import KINN

numba = pytest.importorskip("numba")
pytestmark = pytest.mark.skipif("numba" not in available_backends(), reason="numba backend not usable here")


def run_both(spec, params, x, V0, seed=1, **kwargs):
    """Forward and backward on both backends with one random cotangent."""
    y_ref, tape_ref = kr.forward(spec, params, x, V0, **kwargs)
    y_nb, tape_nb = kr.forward(spec, params, x, V0, backend="numba", **kwargs)
    dy = np.random.default_rng(seed).standard_normal(y_ref.shape).astype(y_ref.dtype)
    return (y_ref, kr.backward(spec, params, tape_ref, dy), tape_ref), \
        (y_nb, kr.backward(spec, params, tape_nb, dy), tape_nb)


def check_against_reference(spec, params, x, V0, **kwargs):
    (y_ref, g_ref, _), (y_nb, g_nb, tape) = run_both(spec, params, x, V0, **kwargs)
    dtype = params["W"].dtype
    assert tape.backend == "numba"
    assert y_nb.dtype == dtype and y_nb.shape == y_ref.shape
    assert_close(y_nb, y_ref, dtype=dtype, what="y")
    assert set(g_nb) == set(g_ref)
    for name in g_ref:
        assert g_nb[name].dtype == dtype and g_nb[name].shape == g_ref[name].shape, name
        assert_close(g_nb[name], g_ref[name], dtype=dtype, what=f"d{name}")



def _representative_cases():
    """Every coupling case with every integrator, each on the default kernel of its coupling kind
    (:func:`helpers.default_kernel`); parameterization and input kind rotate."""
    params = ("positive", "raw")
    cases = []
    for n, (coupling, integrator) in enumerate(itertools.product(COUPLING_CASES, INTEGRATOR_NAMES)):
        readout, dtype = default_kernel(integrator, coupling_kind(COUPLING_CASES[coupling]["coupling"]))
        cases.append((coupling, integrator, readout, params[(n // 3) % 2], n % 2 == 1, dtype.type))
    return cases


@pytest.mark.parametrize("coupling,integrator,readout,param,sequence,dtype", _representative_cases())
def test_matches_reference(coupling, integrator, readout, param, sequence, dtype):
    spec, params, x, V0 = make_case(coupling, integrator, readout, param, sequence=sequence,
                                    return_sequences=sequence, dtype=dtype, seed=7)
    check_against_reference(spec, params, x, V0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sequence", [False, True])
@pytest.mark.parametrize("coupling,integrator,readout,param", option_matrix())
def test_matches_reference_full_matrix(coupling, integrator, readout, param, sequence, dtype):
    spec, params, x, V0 = make_case(coupling, integrator, readout, param, sequence=sequence,
                                    return_sequences=sequence, dtype=dtype)
    check_against_reference(spec, params, x, V0)


@pytest.mark.parametrize("coupling,integrator", [("none", "implicit"), ("dense", "expeuler"),
                                                 ("grid2d-periodic", "euler")])   # derivatives readouts
@pytest.mark.parametrize("order", [1, 3])
def test_orders_without_initial_state(coupling, integrator, order):
    spec, params, x, _ = make_case(coupling, integrator, order=order, batch=5, seed=2, with_V0=False,
                                   **on_default_kernel(coupling, integrator))
    assert spec.readout == "derivatives"
    check_against_reference(spec, params, x, None)
    _, tape = kr.forward(spec, params, x, backend="numba")
    assert "V0" not in kr.backward(spec, params, tape, np.ones(tape.output_shape, x.dtype))


@pytest.mark.parametrize("coupling", ["dense", "kirchhoff", "grid1d-periodic", "grid2d-neumann"])
def test_batch_of_many_chunks(coupling):
    """Batches split into many chunks of several rows (and a ragged last chunk) match the reference."""
    spec, params, x, V0 = make_case(coupling, "implicit", batch=67, n_steps=3, seed=3,
                                    **on_default_kernel(coupling, "implicit"))
    check_against_reference(spec, params, x, V0)


def test_tape_has_reference_semantics():
    spec, params, x, V0 = make_case("kirchhoff", "rk4", "cells", sequence=True, return_sequences=True,
                                    n_steps=5)
    for every in (None, 2):
        (_, _, tape_ref), (_, _, tape_nb) = run_both(spec, params, x, V0, checkpoint_every=every)
        assert tape_nb.backend == "numba" and tape_ref.backend == "numpy"
        assert sorted(tape_nb.states) == sorted(tape_ref.states)
        for n in tape_ref.states:
            assert tape_nb.states[n].shape == tape_ref.states[n].shape
            assert_close(tape_nb.states[n], tape_ref.states[n], what=f"state {n}")
        assert tape_nb.currents.shape == tape_ref.currents.shape
        assert (tape_nb.n_steps, tape_nb.sequence, tape_nb.has_V0, tape_nb.checkpoint_every,
                tape_nb.output_shape) == (tape_ref.n_steps, tape_ref.sequence, tape_ref.has_V0,
                                          tape_ref.checkpoint_every, tape_ref.output_shape)


@pytest.mark.parametrize("coupling,integrator", [("dense", "expeuler"), ("grid2d-neumann", "implicit"),
                                                 ("kirchhoff", "rk4"), ("none", "euler"),
                                                 ("grid1d-periodic", "expeuler")])
@pytest.mark.parametrize("every", [1, 2, 3, 7])
def test_checkpointed_backward_equals_stored(coupling, integrator, every):
    spec, params, x, V0 = make_case(coupling, integrator, sequence=True, return_sequences=True, n_steps=7,
                                    seed=5, **on_default_kernel(coupling, integrator))
    y, tape = kr.forward(spec, params, x, V0, backend="numba")
    y_c, tape_c = kr.forward(spec, params, x, V0, backend="numba", checkpoint_every=every)
    np.testing.assert_array_equal(y, y_c)
    assert sorted(tape_c.states) == sorted({0, 7} | set(range(every, 8, every)))
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(y.dtype)
    g, g_c = kr.backward(spec, params, tape, dy), kr.backward(spec, params, tape_c, dy)
    for name in g:
        np.testing.assert_array_equal(g[name], g_c[name], err_msg=name)
    check_against_reference(spec, params, x, V0, checkpoint_every=every)


def _run_with_threads(n_threads, spec, params, x, V0, dy):
    previous = numba.get_num_threads()
    numba.set_num_threads(n_threads)
    try:
        y, tape = kr.forward(spec, params, x, V0, backend="numba")
        return y, kr.backward(spec, params, tape, dy)
    finally:
        numba.set_num_threads(previous)


@pytest.mark.parametrize("coupling,integrator", [("none", "expeuler"), ("dense", "expeuler"),
                                                 ("grid1d-periodic", "implicit")])
def test_thread_count_determinism(coupling, integrator, monkeypatch):
    from kinn_ref.backends.numba_backend import config
    monkeypatch.setattr(config, "MIN_SHARE_WORK", 0)           # small passes use every thread too
    spec, params, x, V0 = make_case(coupling, integrator, batch=70, n_steps=5, seed=11,
                                    **on_default_kernel(coupling, integrator))
    dy = np.random.default_rng(3).standard_normal((70, spec.readout_width)).astype(x.dtype)
    counts = [1, min(2, numba.config.NUMBA_NUM_THREADS)]
    results = {n: [_run_with_threads(n, spec, params, x, V0, dy) for _ in range(2)] for n in counts}
    for n, ((y1, g1), (y2, g2)) in results.items():       # fixed count: bitwise identical
        np.testing.assert_array_equal(y1, y2)
        for name in g1:
            np.testing.assert_array_equal(g1[name], g2[name], err_msg=f"{name}, {n} threads")
    (y_a, g_a), (y_b, g_b) = results[counts[0]][0], results[counts[-1]][0]
    np.testing.assert_array_equal(y_a, y_b)               # nor does anything depend on the count
    for name in g_a:
        np.testing.assert_array_equal(g_b[name], g_a[name], err_msg=f"{name}, 1 vs {counts[-1]} threads")


_MORE_THREADS = """
import sys, numpy as np, numba
sys.path.insert(0, sys.argv[2])
from helpers import make_case, on_default_kernel
import kinn_ref as kr
from kinn_ref.backends.numba_backend import config
config.MIN_SHARE_WORK = 0
coupling, integrator = sys.argv[3], sys.argv[4]
spec, params, x, V0 = make_case(coupling, integrator, batch=70, n_steps=5, seed=11,
                                **on_default_kernel(coupling, integrator))
dy = np.random.default_rng(3).standard_normal((70, spec.readout_width)).astype(x.dtype)
y, tape = kr.forward(spec, params, x, V0, backend="numba")
np.savez(sys.argv[1], y=y, **kr.backward(spec, params, tape, dy))
"""


@pytest.mark.slow
@pytest.mark.parametrize("coupling,integrator", [("none", "expeuler"), ("dense", "expeuler"),
                                                 ("grid1d-periodic", "implicit")])
def test_results_are_bitwise_the_same_on_more_threads_than_cores(coupling, integrator, tmp_path):
    import os
    import subprocess
    import sys
    files = {}
    for n in (1, 3, 5):
        files[n] = tmp_path / f"t{n}.npz"
        subprocess.run([sys.executable, "-c", _MORE_THREADS, str(files[n]), os.path.dirname(__file__), coupling,
                        integrator], env=dict(os.environ, NUMBA_NUM_THREADS=str(n)), check=True)
    ref = np.load(files[1])
    for n in (3, 5):
        got = np.load(files[n])
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{name}, 1 vs {n} threads")


def _blow_up_case():
    """Explicit Euler with a huge negative leak conductance in the second cell (a circuit that grows by
    itself, which the pre-check only warns about): it overflows after a number of steps set by each row's
    initial state, first in a row of the last chunk."""
    spec, params, x, V0 = make_case("dense", "euler", "last", param="raw", batch=40, n_steps=60, dt=3.0,
                                    seed=4)
    params["g_raw"][1] = -1e20      # cell 1 grows by itself: the pre-check warns, the pass runs
    V0 *= 10.0 ** (5.0 * np.arange(40) - 150.0)[:, None, None]
    return spec, params, x, V0


@pytest.mark.filterwarnings("ignore::kinn_ref.errors.UnstableStepWarning")
def test_nonfinite_raises_with_step_and_cell_of_the_reference():
    spec, params, x, V0 = _blow_up_case()
    with pytest.raises(kr.NonFiniteStateError) as ref:
        kr.forward(spec, params, x, V0)
    with pytest.raises(kr.NonFiniteStateError) as got:
        kr.forward(spec, params, x, V0, backend="numba")
    assert (got.value.step, got.value.cell) == (ref.value.step, ref.value.cell)


@pytest.mark.filterwarnings("ignore::kinn_ref.errors.UnstableStepWarning")
def test_nonfinite_flag_records_the_reference_step_and_cell():
    spec, params, x, V0 = _blow_up_case()
    _, tape_ref = kr.forward(spec, params, x, V0, on_nonfinite="flag")
    y, tape = kr.forward(spec, params, x, V0, backend="numba", on_nonfinite="flag")
    assert tape.nonfinite is not None and tape.nonfinite == tape_ref.nonfinite
    assert not np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="non-finite"):
        kr.backward(spec, params, tape, np.ones_like(y))


def test_finite_pass_has_no_flag():
    spec, params, x, V0 = make_case("grid1d-dirichlet", "rk4", "last")
    _, tape = kr.forward(spec, params, x, V0, backend="numba", on_nonfinite="flag")
    assert tape.nonfinite is None


def test_bad_arguments_raise_value_errors():
    spec, params, x, V0 = make_case("dense", "expeuler", "last")
    y, tape = kr.forward(spec, params, x, V0, backend="numba")
    with pytest.raises(ValueError, match="dy"):
        kr.backward(spec, params, tape, np.ones((y.shape[0], y.shape[1] + 1)))
    with pytest.raises(ValueError, match="checkpoint_every"):
        kr.forward(spec, params, x, V0, backend="numba", checkpoint_every=0)
    with pytest.raises(ValueError, match="on_nonfinite"):
        kr.forward(spec, params, x, V0, backend="numba", on_nonfinite="ignore")
    with pytest.raises(ValueError, match="V0"):
        kr.forward(spec, params, x, V0[:, :1], backend="numba")
    _, numpy_tape = kr.forward(spec, params, x, V0)
    from kinn_ref.backends.numba_backend import load
    with pytest.raises(ValueError, match="numba"):
        load().backward(spec, params, numpy_tape, y)


def test_registered_and_chosen_by_auto():
    assert "numba" in kr.registered_backends()
    if "cuda" not in available_backends():
        assert resolve("auto") == "numba"


def test_layer_and_network_run_on_numba():
    x = np.random.default_rng(0).standard_normal((6, 3))
    layers = {b: KINNLayer(3, 4, order=2, coupling="kirchhoff", backend=b, seed=1)
              for b in ("numpy", "numba")}
    ys = {b: layer(x) for b, layer in layers.items()}
    assert_close(ys["numba"], ys["numpy"])
    dx = {b: layer.backward(np.ones_like(ys[b])) for b, layer in layers.items()}
    assert_close(dx["numba"], dx["numpy"])
    for name in layers["numpy"].grads:
        assert_close(layers["numba"].grads[name], layers["numpy"].grads[name], what=name)
    nets = {b: KINN(3, [5], 2, backend=b, seed=2, order=2, integrator="implicit", coupling="dense")
            for b in ("numpy", "numba")}
    outs = {b: net.forward(x) for b, net in nets.items()}
    assert_close(outs["numba"], outs["numpy"])


@pytest.mark.parametrize("coupling", ["grid1d-dirichlet", "grid1d-periodic", "grid2d-neumann"])
def test_implicit_grid_with_row_swaps(coupling):
    """Negative edge conductances (raw mode) make the tridiagonal systems need partial pivoting; with
    ``C/dt + g = 2.3 |s|`` the systems stay well away from singular."""
    spec, params, x, V0 = make_case(coupling, "implicit", param="raw", seed=9,
                                    **on_default_kernel(coupling, "implicit"))
    params["C_raw"][:] = 0.05
    params["g_raw"][:] = 1.8
    params["G_raw"][:] = -1.0
    _, tape = kr.forward(spec, params, x, V0, backend="numba")
    assert tape.ctx.constants.tri_pivoted.any()
    check_against_reference(spec, params, x, V0)


def test_state_buffer_is_reused_only_once_its_tape_is_gone():
    spec, params, x, V0 = make_case("kirchhoff", "expeuler", sequence=True, n_steps=5,
                                    **on_default_kernel("kirchhoff", "expeuler"))
    y1, tape1 = kr.forward(spec, params, x, V0, backend="numba")
    y2, tape2 = kr.forward(spec, params, x, V0, backend="numba")
    second = id(tape2.ctx.kept)
    assert id(tape1.ctx.kept) != second                   # tape1 still holds its states
    g2 = kr.backward(spec, params, tape2, np.ones_like(y2))
    del tape2
    y3, tape3 = kr.forward(spec, params, x, V0, backend="numba")
    assert id(tape3.ctx.kept) == second
    np.testing.assert_array_equal(y3, y1)
    g3 = kr.backward(spec, params, tape3, np.ones_like(y3))
    for name in g2:
        np.testing.assert_array_equal(g3[name], g2[name])
    for n in tape1.states:
        np.testing.assert_array_equal(tape3.states[n], tape1.states[n])


@pytest.mark.parametrize("shape", [(2,), (3, 2), (2, 2)])
@pytest.mark.parametrize("boundary", ["periodic", "neumann", "dirichlet"])
def test_implicit_grid_with_two_points_on_the_last_axis(shape, boundary):
    """Two points on the last axis: the 2 x 2 tridiagonal factorisation (and no periodic corner)."""
    spec, params, x, V0 = make_case("grid1d-periodic", "implicit", seed=12,
                                    **on_default_kernel("grid1d-periodic", "implicit"))
    spec = spec.replace(grid_shape=shape, boundary=boundary)
    rng = np.random.default_rng(12)
    x = rng.standard_normal(spec.input_shape(3)).astype(params["W"].dtype)
    V0 = rng.standard_normal((3, spec.order, spec.total_nodes)).astype(params["W"].dtype)
    check_against_reference(spec, params, x, V0)


def test_pass_kernels_are_built_per_method_and_keyed_by_the_sources():
    """Each (integrator, readout) has its own kernels; their closure holds the codes and the digest of the
    backend's sources, which numba's on-disk cache keys on."""
    from kinn_ref.backends.numba_backend import loops
    from kinn_ref.backends.numba_backend.codes import INTEGRATOR_CODES, READOUT_CODES
    kernels = loops.pass_kernels("rk4", "cells")
    assert loops.pass_kernels("rk4", "cells") is kernels and loops.pass_kernels("euler", "cells") is not kernels
    for kernel in (kernels.forward_chunks, kernels.backward_chunks):
        cells = [c.cell_contents for c in kernel.py_func.__closure__]
        assert INTEGRATOR_CODES["rk4"] in cells and READOUT_CODES["cells"] in cells
        assert loops.source_digest() in cells
    assert "rk4" in repr(kernels)


def test_compile_notice_is_given_once_when_a_first_call_is_slow(monkeypatch, caplog):
    import time
    from kinn_ref.backends import compile_notice as timer
    from kinn_ref.backends.numba_backend import compile_notice, loops
    monkeypatch.setattr(timer, "NOTICE_AFTER_S", 0.01)
    dispatcher = loops.pass_kernels("euler", "last").forward_chunks
    with caplog.at_level("WARNING", logger="kinn_ref.compile"):
        for _ in range(2):
            with compile_notice.first_call(("test-key", time.time_ns()), "a test kernel", dispatcher):
                time.sleep(0.2)
        with compile_notice.first_call("test-key-fast", "a fast kernel", dispatcher):
            pass
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and all("compiling the numba kernels for a test kernel" in m for m in messages)
    assert compile_notice.cache_location(dispatcher) in messages[0]
    with caplog.at_level("WARNING", logger="kinn_ref.compile"):
        with compile_notice.first_call("test-key-again", "a kernel seen twice", dispatcher):
            time.sleep(0.05)
        caplog.clear()
        with compile_notice.first_call("test-key-again", "a kernel seen twice", dispatcher):
            time.sleep(0.05)
    assert not caplog.records


def test_small_passes_stay_on_one_thread(monkeypatch):
    from kinn_ref.backends.numba_backend import config
    from kinn_ref.backends.numba_backend.dispatch import share_count
    monkeypatch.setattr(numba, "get_num_threads", lambda: 8)
    small, matrix = kr.LayerSpec(4, 32, n_steps=4), kr.LayerSpec(4, 32, coupling="kirchhoff", n_steps=4)
    assert share_count(small, 32, 4, 16) == 1 and share_count(matrix, 32, 4, 16) == 1
    big = -(-config.MIN_SHARE_WORK * 3 // (4 * 32))              # rows giving three shares' work
    assert share_count(small, big, 4, 16) == 3 and share_count(small, 100 * big, 4, 16) == 8
    assert share_count(small, 100 * big, 4, 5) == 5             # at most one thread per chunk
    assert share_count(matrix, big, 4, 16) == 8                 # matrix work weighs 1 + N/5 per node-step
    monkeypatch.setattr(config, "MIN_SHARE_WORK", 0)
    assert share_count(small, 32, 4, 16) == 8


def test_shares_run_on_threads_and_raise_their_errors():
    import threading
    from kinn_ref.backends.numba_backend.dispatch import run_shares
    seen = {}

    def call(share):
        seen[share] = threading.current_thread().name
        if share == 2:
            raise ValueError("share 2 failed")

    with pytest.raises(ValueError, match="share 2"):
        run_shares(3, call)
    assert sorted(seen) == [0, 1, 2] and all(name.startswith("kinn-ref-numba") for name in seen.values())
    run_shares(1, call)
    assert seen[0] == threading.current_thread().name
