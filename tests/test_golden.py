"""The golden suite: every available backend reproduces every case; integrity, regeneration, coverage, CLI."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import kinn_ref as kr
from helpers import is_default_kernel
from kinn_ref.analysis.golden_cases import golden_cases, case_inputs
from kinn_ref.analysis.golden_check import (check_implementation, load_adapter, relative_error, run_backend,
                                   verify_backend)
from kinn_ref.analysis.golden_export import case_file_bytes, copy_suite, export_suite
from kinn_ref.analysis.golden_generate import complex_step_agreement, golden_values
from kinn_ref.analysis.golden_store import (PACKAGED, TOLERANCES, GoldenIntegrityError, load_case, load_suite,
                                   read_manifest)
from kinn_ref.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "minimal_kinn.py"
MANIFEST = read_manifest()
CASES = {e["name"]: e for e in MANIFEST["cases"]}
SIMULATED_GPU = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def _backend_case_params():
    """(backend, case) pairs. By default the numba backend runs the cases on the default suite's kernels
    (``helpers.is_default_kernel``; the others compile kernels of their own, seconds each) and the CUDA
    simulator every sixth case; the rest run with --runslow."""
    params = []
    for backend in kr.available_backends():
        for i, name in enumerate(sorted(CASES)):
            s = CASES[name]["spec"]
            slow = (backend == "cuda" and SIMULATED_GPU and i % 6) or (
                backend == "numba" and not is_default_kernel(s["integrator"], s["readout"], s["coupling"],
                                                             CASES[name]["dtype"]))
            params.append(pytest.param(backend, name, marks=[pytest.mark.slow] if slow else [],
                                       id=f"{backend}-{name}"))
    return params


@pytest.fixture(scope="module")
def loaded():
    return {case.name: case for case in load_suite()[1]}


@pytest.mark.parametrize("backend,name", _backend_case_params())
def test_backend_reproduces_golden_case(loaded, backend, name):
    case = loaded[name]
    y, grads = run_backend(case, backend)
    tol = case.entry["tolerance"]["gpu" if backend == "cuda" else "cpu"]
    assert relative_error(y, case.y) <= tol, f"y: {relative_error(y, case.y):.2e} > {tol:.0e}"
    assert set(grads) == set(case.grads)
    for key, expected in case.grads.items():
        err = relative_error(grads[key], expected)
        assert err <= tol, f"grad {key}: {err:.2e} > {tol:.0e}"


def test_manifest_covers_the_option_space():
    specs = [(e, e["spec"]) for e in MANIFEST["cases"]]
    grids = {(tuple(s["grid_shape"]) and len(s["grid_shape"]), s["boundary"]) for _, s in specs
             if s["coupling"] == "grid"}
    assert grids == {(d, b) for d in (1, 2) for b in ("periodic", "neumann", "dirichlet")}
    assert {s["coupling"] for _, s in specs} == {"none", "dense", "kirchhoff", "grid"}
    assert {s["integrator"] for _, s in specs} == {"euler", "expeuler", "implicit", "rk4"}
    assert {s["readout"] for _, s in specs} == {"last", "cells", "derivatives"}
    assert {s["param"] for _, s in specs} == {"positive", "raw"}
    assert {s["order"] for _, s in specs} == {1, 2, 3}
    assert {(e["input"], s["return_sequences"]) for e, s in specs} == \
        {(i, r) for i in ("static", "sequence") for r in (False, True)}
    assert {e["has_V0"] for e, _ in specs} == {False, True}
    assert {e["dtype"] for e, _ in specs} == {"float64", "float32"}
    assert any(e["layer"] == "KINNLayers" for e, _ in specs)
    for e, _ in specs:
        assert e["tolerance"] == TOLERANCES[e["dtype"]]


def test_manifest_records_provenance_and_schema():
    assert MANIFEST["schema_version"] == 1
    prov = MANIFEST["provenance"]
    assert "complex-step" in prov["gradients"] and "mpmath" in prov["forward"]
    assert {e["name"] for e in MANIFEST["cases"]} == {c.name for c in golden_cases()}
    total = sum((PACKAGED / e["file"]).stat().st_size for e in MANIFEST["cases"])
    assert total < 2_000_000


@pytest.mark.parametrize("name", ["none-euler-last-positive-K1-static-V0", "seed-KINNLayers",
                                  "float32-dense-euler-cells", "kirchhoff-implicit-cells-positive-K1-static"])
def test_regeneration_reproduces_stored_bytes(name):
    case = next(c for c in golden_cases() if c.name == name)
    from kinn_ref.analysis.golden_store import sha256
    assert sha256(case_file_bytes(case)) == CASES[name]["sha256"]


@pytest.mark.slow
def test_regeneration_reproduces_every_stored_file(tmp_path):
    manifest = export_suite(tmp_path)
    assert {e["name"]: e["sha256"] for e in manifest["cases"]} == {n: e["sha256"] for n, e in CASES.items()}


def test_complex_step_gradients_have_more_than_30_digits():
    case = next(c for c in golden_cases() if c.name == "kirchhoff-rk4-derivatives-K3")
    params, x, V0, dy = case_inputs(case)
    for name, index in [("G_raw", (1, 0, 1)), ("C_raw", (2, 1)), ("x", (0, 1, 0))]:
        assert complex_step_agreement(case.spec, params, x, V0, dy, name, index) > 30


def test_stored_values_match_a_fresh_high_precision_evaluation(loaded):
    case = loaded["dense-expeuler-derivatives-positive-K1-static"]
    y, grads = golden_values(case.spec, case.params, case.x, case.V0, case.dy)
    np.testing.assert_array_equal(y, case.y)
    for k in grads:
        np.testing.assert_array_equal(grads[k], case.grads[k])


def _copy(tmp_path):
    target = tmp_path / "suite"
    copy_suite(target)
    return target


def test_corrupted_file_is_detected_by_its_hash(tmp_path):
    suite = _copy(tmp_path)
    entry = read_manifest(suite)["cases"][3]
    path = suite / entry["file"]
    data = bytearray(path.read_bytes())
    data[-200] ^= 0x01                    # one flipped bit in the array data
    path.write_bytes(bytes(data))
    with pytest.raises(GoldenIntegrityError, match="SHA-256"):
        load_case(suite, entry)
    with pytest.raises(GoldenIntegrityError):
        load_suite(suite)
    assert main(["golden", "verify", "--backend", "numpy", "--dir", str(suite)]) == 2


def test_missing_file_and_unknown_schema_are_detected(tmp_path):
    suite = _copy(tmp_path)
    entry = read_manifest(suite)["cases"][0]
    (suite / entry["file"]).unlink()
    with pytest.raises(GoldenIntegrityError, match="missing"):
        load_case(suite, entry)
    manifest = json.loads((suite / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (suite / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldenIntegrityError, match="schema_version"):
        read_manifest(suite)


def test_partial_export_keeps_the_other_cases(tmp_path):
    suite = _copy(tmp_path)
    manifest = export_suite(suite, select="seed-*")
    assert {e["name"]: e["sha256"] for e in manifest["cases"]} == {n: e["sha256"] for n, e in CASES.items()}
    assert all(r.status == "ok" for r in verify_backend("numpy", suite, "seed-*"))


def test_verify_reports_a_wrong_backend_result(monkeypatch, loaded):
    case = loaded["none-euler-last-positive-K1-static-V0"]
    y, grads = run_backend(case, "numpy")
    grads["W"] = grads["W"] * (1 + 1e-9)
    from kinn_ref.analysis.golden_check import compare
    result = compare(case, y, grads, 1e-12)
    assert result.failed and "grad.W" in result.detail
    del grads["b"]
    assert "missing gradients ['b']" in compare(case, y, grads, 1e-12).detail


def _wrapped_reference(spec, params, x, V0, dy):
    from kinn_ref.analysis.golden_cases import spec_from_dict
    spec = spec_from_dict(spec)
    y, tape = kr.forward(spec, params, x, V0)
    return y, kr.backward(spec, params, tape, dy)


def _forward_only_with_a_perturbed_step(spec, params, x, V0, dy):
    from kinn_ref.analysis.golden_cases import spec_from_dict
    s = spec_from_dict(spec)
    y, _ = kr.forward(s.replace(dt=s.dt * (1 + 1e-6)), params, x, V0)
    return y, None


def test_check_implementation_through_the_adapter():
    ok = check_implementation(_wrapped_reference, select="kirchhoff-*")
    assert ok and all(r.status == "ok" for r in ok)
    bad = check_implementation(_forward_only_with_a_perturbed_step, select="dense-*")
    assert all(r.status == "mismatch" and set(r.errors) == {"y"} for r in bad)


def test_example_adapter_passes_through_the_cli(capsys):
    assert main(["golden", "check", "--impl", f"{EXAMPLE}:adapter"]) == 0
    out = capsys.readouterr().out
    summary = out.strip().splitlines()[-1]
    assert "0 mismatch, 0 error" in summary and not summary.startswith("0 ok")
    results = check_implementation(load_adapter(f"{EXAMPLE}:adapter"))
    supported = [r for r in results if r.status == "ok"]
    assert len(supported) >= 8 and all("grad.x" in r.errors for r in supported)


def test_cli_verify_and_export_copy(tmp_path, capsys):
    assert main(["golden", "verify", "--backend", "all", "--cases", "seed-KINNLayers"]) == 0
    out = capsys.readouterr().out
    for backend in kr.available_backends():
        assert f"backend {backend}" in out
    assert main(["golden", "export", str(tmp_path / "copy"), "--copy"]) == 0
    assert main(["golden", "verify", "--backend", "numpy", "--dir", str(tmp_path / "copy"),
                 "--cases", "none-*"]) == 0


def test_cli_rejects_bad_arguments(capsys):
    assert main(["golden", "check", "--impl", "no_colon_here"]) == 2
    assert main(["golden", "check", "--impl", "not_a_module_xyz:adapter"]) == 2
    assert main(["golden", "verify", "--backend", "numpy", "--cases", "no-such-case*"]) == 2
    assert main(["golden", "verify", "--backend", "no-such-backend"]) == 2


def test_export_regenerates_selected_cases(tmp_path):
    manifest = export_suite(tmp_path, select="none-euler-*")
    assert [e["name"] for e in manifest["cases"]] == ["none-euler-last-positive-K1-static-V0"]
    assert manifest["cases"][0]["sha256"] == CASES["none-euler-last-positive-K1-static-V0"]["sha256"]
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("blocked", ["manifest.json", "first case"])
def test_copy_into_a_folder_where_a_file_should_be_copies_nothing(tmp_path, blocked):
    name = read_manifest(PACKAGED)["cases"][0]["file"] if blocked == "first case" else blocked
    (tmp_path / "suite" / name).mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"suite/{name} is a folder where a file should be written"):
        copy_suite(tmp_path / "suite")
    assert [p.name for p in (tmp_path / "suite").iterdir()] == [name]


def test_export_into_a_folder_where_the_manifest_should_be_generates_nothing(tmp_path, capsys):
    (tmp_path / "suite" / "manifest.json").mkdir(parents=True)
    with pytest.raises(ValueError, match="manifest.json is a folder where a file should be written"):
        export_suite(tmp_path / "suite", select="none-euler-*")
    assert main(["golden", "export", str(tmp_path / "suite"), "--cases", "none-euler-*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"kinn-ref golden: error: DIR {tmp_path / 'suite'}: {tmp_path / 'suite' / 'manifest.json'} is a "
                   "folder where a file should be written")
    assert [p.name for p in (tmp_path / "suite").iterdir()] == ["manifest.json"]
