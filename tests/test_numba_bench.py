"""The benchmark harness and the PyTorch port it compares against (the port must do the reference's work)."""
import json

import numpy as np
import pytest

import kinn_ref as kr
from helpers import COUPLING_CASES, INTEGRATOR_NAMES, assert_close, make_case, option_matrix
from kinn_ref.backends import available_backends
from kinn_ref.bench import harness
from kinn_ref.bench.configs import BenchConfig, cpu_configs
from kinn_ref.bench.report import markdown


def _check_port(spec, params, x, V0):
    from kinn_ref.bench.torch_port import forward_backward
    y_ref, tape = kr.forward(spec, params, x, V0)
    dy = np.random.default_rng(1).standard_normal(y_ref.shape).astype(y_ref.dtype)
    g_ref = kr.backward(spec, params, tape, dy)
    y, grads = forward_backward(spec, params, x, dy, V0)
    dtype = params["W"].dtype
    assert_close(y, y_ref, dtype=dtype, what="y")
    assert set(grads) == set(g_ref)
    for name in g_ref:
        assert_close(grads[name], g_ref[name], dtype=dtype, what=f"d{name}")


@pytest.mark.parametrize("coupling", list(COUPLING_CASES))
@pytest.mark.parametrize("integrator", INTEGRATOR_NAMES)
def test_torch_port_matches_reference(coupling, integrator):
    pytest.importorskip("torch")
    spec, params, x, V0 = make_case(coupling, integrator, "derivatives", sequence=True, return_sequences=True)
    _check_port(spec, params, x, V0)


@pytest.mark.slow
@pytest.mark.parametrize("coupling,integrator,readout,param", option_matrix())
def test_torch_port_full_matrix(coupling, integrator, readout, param):
    pytest.importorskip("torch")
    for sequence in (False, True):
        spec, params, x, V0 = make_case(coupling, integrator, readout, param, sequence=sequence)
        _check_port(spec, params, x, V0)


@pytest.mark.parametrize("config", cpu_configs(("float32",)), ids=lambda c: c.name)
def test_torch_port_on_benchmark_layers(config):
    """The benchmark layers, shrunk in batch, steps and grid size, with float32 tolerances."""
    pytest.importorskip("torch")
    changes = {"n_steps": 3} if config.spec.coupling != "grid" else {"n_steps": 3, "grid_shape": (16,)}
    spec = config.spec.replace(**changes)
    params, x, _ = harness.make_inputs(BenchConfig(config.name, spec, 4, config.dtype))
    _check_port(spec, params, x, None)


def _tiny(name="dense"):
    spec = kr.LayerSpec(3, 5, order=2, coupling=name, n_steps=3)
    return BenchConfig(name, spec, 6, np.dtype(np.float64))


@pytest.mark.skipif("numba" not in available_backends(), reason="numba backend not usable here")
def test_side_by_side_timing_and_report(tmp_path):
    config = _tiny()
    res = harness.time_side_by_side(config, ["numba", "numpy"], repeats=2)
    assert set(res["seconds"]) == {"numba", "numpy"} and set(res["ratio"]) == {"numpy"}
    assert all(len(s["samples"]) == 2 and s["total"] > 0 for s in res["seconds"].values())
    res.update(flops=config.flops(), bytes=config.bytes_moved())
    run = {"command": "kinn-ref bench", "date": "today", "machine": harness.machine_description(),
           "limits": {"gemm_gflops_float32": 1.0, "gemm_gflops_float64": 1.0, "copy_gbs": 1.0},
           "backends": ["numba", "numpy"], "timings": {config.label: res}, "checkpoint_every": 2,
           "memory": {config.label: {k: harness.peak_memory(config, k.split("_")[0],
                                                            2 if k.endswith("checkpointed") else None)
                                     for k in ("numba", "numba_checkpointed", "numpy", "numpy_checkpointed")}}}
    text = markdown(run)
    assert config.label in text and "numba vs numpy" in text and "Peak memory" in text
    path = tmp_path / "bench.json"
    harness.write_json(str(path), run)
    assert json.loads(path.read_text())["timings"][config.label]["ratio"] == res["ratio"]
    assert [p.name for p in tmp_path.iterdir()] == ["bench.json"]


def test_work_models_scale_with_the_problem():
    small, large = _tiny(), _tiny()
    large = BenchConfig("dense", small.spec.replace(n_steps=6), 12, small.dtype)
    assert large.flops() == 4 * small.flops()
    assert cpu_configs(("float64",))[0].bytes_moved() == 2 * cpu_configs(("float32",))[0].bytes_moved()
