"""Reprs of the user-facing objects, and which warnings reach the user."""
import contextlib
import os
import warnings

import numpy as np
import pytest

import kinn_ref as kr
from kinn_ref.backends.launch_warnings import performance_warning_categories, quiet_launches
from kinn_ref.errors import UnstableStepError, UnstableStepWarning
from kinn_ref.training.optimizers import SGD, Adam, AdamW
from kinn_ref.training.stability import StabilityGuard

SPEC = kr.LayerSpec(in_features=3, n_nodes=8, order=2, coupling="kirchhoff", integrator="expeuler", dt=0.1,
                    n_steps=20, readout="derivatives")
# values no repr may print: a 1-element run of 7 digits cannot appear by accident in shapes or hyperparameters
MARKER = 0.1234567


def _marked_params(spec):
    params = kr.init_params(spec, seed=0)
    for v in params.values():
        v.flat[0] = MARKER
    return params


def test_spec_summary_names_sizes_coupling_and_step():
    assert SPEC.summary() == "in=3 nodes=8 order=2 kirchhoff expeuler dt=0.1 n_steps=20 readout=derivatives"
    grid = kr.LayerSpec(1, 4, coupling="grid", grid_shape=(16, 16), boundary="neumann", integrator="euler",
                        param="raw", return_sequences=True)
    assert grid.summary() == ("in=1 nodes=4 order=1 grid=16x16 neumann euler dt=0.1 n_steps=10 readout=last "
                              "param=raw return_sequences")


@pytest.mark.parametrize("backend", kr.available_backends())
def test_tape_repr_shows_spec_dtype_batch_and_shapes_not_values(backend):
    # the CUDA simulator runs about 0.2 ms per simulated thread: a smaller pass there
    spec, B = (SPEC.replace(n_steps=6), 2) if backend == "cuda" else (SPEC, 16)
    x = np.full((B, 3), MARKER)
    y, tape = kr.forward(spec, _marked_params(spec), x, backend=backend, checkpoint_every=5)
    text = repr(tape)
    assert text.startswith("DeviceTape(" if backend == "cuda" else "Tape(")
    assert f"spec=<{spec.summary()}>" in text and f"backend={backend!r}" in text
    assert "dtype=float64" in text and f"batch={B}" in text and f"n_steps={spec.n_steps}" in text
    assert f"x=({B}, 3)" in text and "checkpoint_every=5" in text and f"output=({B}, 24)" in text
    if backend != "cuda":
        assert "currents=(16, 20, 8)" in text and "kept of (16, 2, 8)" in text
    assert "1234567" not in text and "array(" not in text and "\n" not in text
    assert len(text) < 400


def test_float32_tape_repr_names_its_dtype():
    params = kr.init_params(SPEC, seed=0, dtype=np.float32)
    _, tape = kr.forward(SPEC, params, np.zeros((2, 3), np.float32))
    assert "dtype=float32" in repr(tape) and "batch=2" in repr(tape)


def test_layer_and_network_reprs():
    layer = kr.KINNLayer(3, 8, order=2, coupling="kirchhoff", integrator="expeuler", dt=0.1, n_steps=20,
                         readout="derivatives", params=_marked_params(SPEC))
    text = repr(layer)
    n = sum(v.size for v in layer.params.values())
    assert text == (f"KINNLayer(<{SPEC.summary()}>, dtype=float64, backend='numpy', parameters={n})")

    seed_layer = kr.KINNLayers(5, dt=0.05)
    seed_layer.conductance[...] = MARKER
    assert repr(seed_layer) == "KINNLayers(n_nodes=5, dt=0.05, n_steps=10, dtype=float64, backend='numpy', parameters=35)"

    net = kr.KINN(3, [16, 8], 2, dt=0.1, n_steps=4, head=True, coupling="dense")
    lines = repr(net).splitlines()
    total = sum(v.size for v in net.parameters().values())
    assert lines[0] == (f"KINN(input_dim=3, hidden_dims=[16, 8], output_dim=2, activation='relu', head=True, "
                        f"dtype=float64, backend='numpy', parameters={total}")
    assert lines[1].startswith("  (layers.0): KINNLayer(<in=3 nodes=16 order=1 dense")
    assert lines[3].startswith("  (layers.2): KINNLayer(<in=8 nodes=2 ")
    assert lines[4] == "  (head): Linear(2 -> 2, dtype=float64)" and lines[5] == ")"


def test_optimizer_reprs_show_kind_and_hyperparameters_not_values():
    params = {"w": np.full((3, 4), MARKER), "b": np.full(4, MARKER)}
    adam = Adam(params, lr=3e-4, weight_decay=0.1)
    adam.step({"w": np.ones((3, 4)), "b": np.ones(4)})
    assert repr(adam) == ("Adam(kind='adam', lr=0.0003, betas=[0.9, 0.999], eps=1e-08, weight_decay=0.1, "
                          "parameters=2 arrays (16 values), step_count=1)")
    assert repr(SGD(params, lr=0.5, momentum=0.0, nesterov=True)) == (
        "SGD(kind='sgd', lr=0.5, momentum=0.0, nesterov=True, parameters=2 arrays (16 values), step_count=0)")
    assert "exclude=['b']" in repr(AdamW(params, exclude=("b",)))
    assert "1234567" not in repr(adam)


def _performance_warning():
    from numba.core.errors import NumbaPerformanceWarning
    return NumbaPerformanceWarning


def test_quiet_launches_hides_numba_performance_warnings_only_inside_the_call():
    NumbaPerformanceWarning = _performance_warning()

    @quiet_launches
    def library_launch():
        """A backend entry point."""
        warnings.warn(NumbaPerformanceWarning("Grid size 1 will likely result in GPU under-utilization"))
        warnings.warn("something else the user should see", UserWarning)
        return 7

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert library_launch() == 7
        warnings.warn(NumbaPerformanceWarning("the user's own launch"))
    assert [w.category for w in caught] == [UserWarning, NumbaPerformanceWarning]
    assert "the user's own launch" in str(caught[1].message)     # numba adds terminal highlighting
    assert library_launch.__name__ == "library_launch" and library_launch.__doc__ == "A backend entry point."
    assert NumbaPerformanceWarning in performance_warning_categories()


@pytest.mark.skipif("numba" not in kr.available_backends(), reason="numba backend not usable here")
def test_numba_backend_hides_performance_warnings_of_its_kernels(monkeypatch):
    """Warnings raised where the backend runs its kernels (inside its single-threaded-BLAS block, in forward
    and backward) stay inside the backend."""
    from kinn_ref.backends.numba_backend import backend
    NumbaPerformanceWarning = _performance_warning()
    blas_block = backend.single_threaded_blas
    entered = []

    @contextlib.contextmanager
    def warning_block():
        entered.append(True)
        warnings.warn(NumbaPerformanceWarning("parallel=True was specified but no transformation was possible"))
        with blas_block():
            yield

    monkeypatch.setattr(backend, "single_threaded_blas", warning_block)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y, tape = kr.forward(SPEC, kr.init_params(SPEC), np.ones((2, 3)), backend="numba")
        kr.backward(SPEC, kr.init_params(SPEC), tape, np.ones_like(y))
    assert len(entered) == 2
    assert not [w for w in caught if issubclass(w.category, NumbaPerformanceWarning)]


@pytest.mark.skipif("cuda" not in kr.available_backends(), reason="cuda backend not usable here")
def test_small_cuda_launches_emit_no_performance_warning(monkeypatch):
    """A tiny layer launches grids of one or two blocks. numba-cuda warns about every grid under 128 blocks;
    its simulator does not, so there each launch is made to warn as the real dispatcher does."""
    from kinn_ref.backends.cuda_backend import backend
    from kinn_ref.backends.cuda_backend.training import step as training
    from kinn_ref.backends.cuda_backend.runtime.compat import simulator_active
    from numba.cuda.core.errors import NumbaPerformanceWarning
    launches = []
    if simulator_active():
        from numba.cuda.simulator.kernel import FakeCUDAKernel
        configure = FakeCUDAKernel.__getitem__

        def warning_getitem(self, configuration):
            kernel = configure(self, configuration)
            grid = int(np.prod(kernel.grid_dim))
            launches.append(grid)
            if grid < 128:
                warnings.warn(NumbaPerformanceWarning(f"Grid size {grid} will likely result in GPU "
                                                      "under-utilization due to low occupancy."))
            return kernel

        monkeypatch.setattr(FakeCUDAKernel, "__getitem__", warning_getitem)
    spec = kr.LayerSpec(2, 3, order=2, coupling="dense", integrator="euler", n_steps=3)
    params = kr.init_params(spec, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y, tape = kr.forward(spec, params, np.ones((2, 2)), backend="cuda")
        kr.backward(spec, params, tape, np.ones_like(y))
        dparams = backend.to_device(params)
        cuda = backend.cuda_module()
        training.train_step(spec, dparams, cuda.to_device(np.ones((2, 2))), cuda.to_device(np.zeros((2, 3))),
                            training.DeviceAdam(dparams))
    assert not [str(w.message) for w in caught if issubclass(w.category, NumbaPerformanceWarning)]
    if simulator_active():
        assert launches and min(launches) < 128      # the emulation did fire inside the library's calls
    elif os.environ.get("KINN_REF_REAL_CUDA") != "1":
        pytest.skip("real GPU run without KINN_REF_REAL_CUDA=1")


def test_stability_guard_refuses_or_warns_when_no_dt_is_stable():
    """A dense layer with a growing mode is unstable for every dt: the guard raises by default, and with
    on_unstable="warn" says so as a warning and leaves dt."""
    net = kr.KINN(1, [], 2, dt=0.1, coupling="dense", integrator="euler", param="raw")
    params = net.layers[0].params
    params["C_raw"][...] = 1.0
    params["g_raw"][...] = 0.0
    params["G_raw"][0] = [[1.0, 0.0], [0.0, 1.0]]       # dV/dt = +V: grows for every dt
    with pytest.raises(UnstableStepError, match="layers.0: the circuit is unstable for every dt") as info:
        StabilityGuard().apply(net)
    assert info.value.dt_max == 0.0 and info.value.dt == 0.1 and net.layers[0].spec.dt == 0.1
    with pytest.warns(UnstableStepWarning, match="layers.0: the circuit is unstable for every dt"):
        changes = StabilityGuard(on_unstable="warn").apply(net)
    assert changes == [{"layer": "layers.0", "old_dt": 0.1, "new_dt": None}]
