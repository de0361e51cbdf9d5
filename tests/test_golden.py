"""The golden suite: every available backend reproduces every case; integrity, regeneration, coverage, CLI."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import kinn_ref as kr
from helpers import is_default_kernel
from kinn_ref.backends import implemented_integrators
from kinn_ref.analysis.golden_cases import SUITE_VERSION, TIERS, GoldenCase, golden_cases, case_inputs, case_seed
from kinn_ref.analysis.golden_check import (DIGITS_CAP, check_implementation, compare, digits_by_tier,
                                            digits_of_agreement, format_table, load_adapter, relative_error,
                                            run_backend, verify_backend)
from kinn_ref.analysis.golden_export import case_file_bytes, copy_suite, export_suite
from kinn_ref.analysis.golden_generate import complex_step_agreement, golden_values
from kinn_ref.analysis.golden_store import (PACKAGED, TOLERANCES, GoldenIntegrityError, load_case, load_suite,
                                   read_manifest)
from kinn_ref.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "minimal_kinn.py"
MANIFEST = read_manifest()
CASES = {e["name"]: e for e in MANIFEST["cases"]}
SIMULATED_GPU = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
CATALOGUE = {c.name: c for c in golden_cases()}


def _backend_case_params():
    """(backend, case) pairs. By default the numba backend runs the cases on the default suite's kernels
    (``helpers.is_default_kernel``; the others compile kernels of their own, seconds each) and the CUDA
    simulator every sixth case of at most 40 steps; the rest run with --runslow."""
    params = []
    for backend in kr.available_backends():
        for i, name in enumerate(sorted(CASES)):
            s = CASES[name]["spec"]
            if s["integrator"] not in implemented_integrators(backend):
                continue                            # listed as unsupported by golden verify (tested below)
            slow = (backend == "cuda" and SIMULATED_GPU and (i % 6 or s["n_steps"] > 40)) or (
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
    assert {s["integrator"] for _, s in specs} == set(kr.spec.INTEGRATORS)
    assert {s["readout"] for _, s in specs} == {"last", "cells", "derivatives"}
    assert {s["param"] for _, s in specs} == {"positive", "raw"}
    assert {s["order"] for _, s in specs} == {1, 2, 3, 4}
    assert {(e["input"], s["return_sequences"]) for e, s in specs} == \
        {(i, r) for i in ("static", "sequence") for r in (False, True)}
    assert {e["has_V0"] for e, _ in specs} == {False, True}
    assert {e["dtype"] for e, _ in specs} == {"float64", "float32"}
    assert any(e["layer"] == "KINNLayers" for e, _ in specs)
    assert {e["tier"] for e, _ in specs} == set(TIERS)
    # one case per (coupling, integrator) of the Latin square, and eight more (seed layer, phi1(0), K = 3, float32)
    assert sum(e["tier"] == "basic" for e, _ in specs) == 9 * len(kr.spec.INTEGRATORS) + 8


def test_tolerances_follow_the_condition_of_each_case():
    from kinn_ref.analysis.golden_tolerance import FLOORS, SAFETY, UNIT_ROUNDOFF, tolerance
    for e in MANIFEST["cases"]:
        bound = SAFETY * UNIT_ROUNDOFF[e["dtype"]] * max(e["condition"], 1.0)
        for device, tol in e["tolerance"].items():
            assert tol >= FLOORS[e["dtype"]][device]
            assert tol == FLOORS[e["dtype"]][device] or 0.9 * bound <= tol <= 5.5 * bound, e["name"]
    assert tolerance("float64", 3.0) == {"cpu": 1e-12, "gpu": 1e-11}
    assert tolerance("float64", 1e4) == {"cpu": 5e-11, "gpu": 5e-11}
    assert tolerance("float32", 100.0) == {"cpu": 2e-4, "gpu": 2e-4}
    assert tolerance("float32", 0.1) == {"cpu": 2e-6, "gpu": 2e-6}
    # the float32 cases of the basic tier keep a tolerance of the specification's order
    assert all(2e-6 <= e["tolerance"]["cpu"] <= 1e-4 for e in MANIFEST["cases"]
               if e["tier"] == "basic" and e["dtype"] == "float32")
    assert TOLERANCES["float64"] == FLOORS["float64"]


def test_condition_estimate_sees_a_short_and_a_long_run():
    from kinn_ref.analysis.golden_tolerance import case_condition
    short = CATALOGUE["none-euler-last-positive-K1-static-V0"]
    assert 1 <= case_condition(short, *case_inputs(short)) < 50
    assert CASES["float32-long-none-euler-last-positive-K1-T500"]["condition"] > 100


def _inputs(name):
    params, x, V0, _ = case_inputs(CATALOGUE[name])
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def test_stiff_cases_sit_just_inside_the_explicit_stability_limit():
    import re
    from kinn_ref.analysis.golden_tiers import conductance_spread, stability_limit
    stiff = [c for c in CATALOGUE.values() if c.tier == "stiff"]
    assert {c.spec.integrator for c in stiff} >= {"euler", "expeuler", "rk4", "implicit"}
    for case in stiff:
        params = _inputs(case.name)
        assert conductance_spread(case, params) >= 1e6, case.name
        limit = stability_limit(case, params)
        if case.spec.integrator == "implicit":
            assert limit == float("inf")
            continue
        stated = float(re.search(r"dt = (0\.\d+) of", case.description).group(1))
        assert 0.9 <= stated <= 0.99
        assert abs(case.spec.dt / limit - stated) < 0.005, (case.name, case.spec.dt / limit)


def test_other_cases_are_well_inside_the_stable_region():
    from kinn_ref.analysis.golden_tiers import stability_limit
    for case in CATALOGUE.values():
        if case.tier != "stiff" and case.spec.integrator in ("euler", "expeuler", "rk4"):
            limit = stability_limit(case, _inputs(case.name))
            assert limit == 0.0 or case.spec.dt <= 0.7 * limit, case.name   # 0: a growing circuit (the seed's)


def test_long_edge_and_float32_tiers_hold_what_they_promise(loaded):
    by_tier = {t: [c for c in CATALOGUE.values() if c.tier == t] for t in TIERS}
    assert all(c.spec.n_steps >= 200 for t in ("long", "float32") for c in by_tier[t])
    assert all(c.dtype == "float64" for c in by_tier["long"]) and all(c.dtype == "float32" for c in by_tier["float32"])
    edge = {c.name: loaded[c.name] for c in by_tier["edge"]}
    raw_g0 = [c for n, c in edge.items() if "-g0-" in n]
    assert len(raw_g0) >= 4 and all(c.spec.param == "raw" and not c.params["g_raw"].any() for c in raw_g0)
    for name, a in (("edge-phi1-a1e-9-none-expeuler-last-raw-K1", 1e-9),
                    ("edge-phi1-a1e-5-none-expeuler-derivatives-raw-K2", 1e-5)):
        c = edge[name]
        np.testing.assert_allclose(c.spec.dt * c.params["g_raw"] / c.params["C_raw"], a, rtol=1e-12)
    assert any(not c.params["beta"].any() for c in edge.values())
    assert any(c.spec.order == 4 for c in edge.values())
    assert any(c.spec.grid_shape == (2,) for c in edge.values())
    one_point = {c.spec.boundary for c in edge.values() if c.spec.grid_shape == (1,)}
    assert one_point == {"periodic", "neumann", "dirichlet"}
    assert any(c.spec.grid_shape is not None and len(c.spec.grid_shape) == 2 and 1 in c.spec.grid_shape
               for c in edge.values())
    assert any(not c.params["leak"].any() for c in edge.values())


def test_manifest_records_provenance_and_schema():
    assert MANIFEST["schema_version"] == 1
    assert MANIFEST["suite_version"] == SUITE_VERSION
    year, month, patch = (int(v) for v in SUITE_VERSION.split("."))
    assert year >= 2026 and 1 <= month <= 12 and patch >= 0
    changelog = (Path(__file__).resolve().parents[1] / "docs" / "golden_changelog.md").read_text()
    assert f"## {SUITE_VERSION}" in changelog and "Errata" in changelog
    prov = MANIFEST["provenance"]
    assert "complex-step" in prov["gradients"] and "mpmath" in prov["forward"]
    assert {e["name"] for e in MANIFEST["cases"]} == {c.name for c in golden_cases()}
    total = sum((PACKAGED / e["file"]).stat().st_size for e in MANIFEST["cases"])
    assert total < 2_000_000


@pytest.mark.parametrize("name", ["none-euler-last-positive-K1-static-V0", "seed-KINNLayers",
                                  "float32-dense-euler-cells", "kirchhoff-implicit-cells-positive-K1-static",
                                  "stiff-none-euler-last-raw-K1", "edge-phi1-a1e-9-none-expeuler-last-raw-K1",
                                  "edge-grid1d-periodic-2points-euler-last-positive-K1"])
def test_regeneration_reproduces_stored_bytes(name):
    case = CATALOGUE[name]
    assert case_file_bytes(case) == (PACKAGED / CASES[name]["file"]).read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["long-dense-implicit-derivatives-raw-K2-T200",
                                  "float32-long-seed-KINNLayers-T200"])
def test_regeneration_reproduces_stored_bytes_of_long_cases(name):
    assert case_file_bytes(CATALOGUE[name]) == (PACKAGED / CASES[name]["file"]).read_bytes()


def test_seeds_depend_on_the_name_alone():
    import hashlib
    case = CATALOGUE["seed-KINNLayers"]
    assert case.seed == case_seed(case.name) == int.from_bytes(hashlib.sha256(b"seed-KINNLayers").digest()[:8], "big")


def test_adding_a_case_changes_no_other_case_file(tmp_path, monkeypatch):
    from kinn_ref.analysis import golden_tiers
    before = {c.name: case_inputs(c) for c in golden_cases()}
    added = GoldenCase("edge-added-none-euler-last-raw-K1", kr.LayerSpec(2, 2, integrator="euler", dt=0.1,
                                                                         n_steps=2, param="raw"), tier="edge")
    original = golden_tiers.tier_cases
    monkeypatch.setattr(golden_tiers, "tier_cases", lambda: [added] + original())
    after = golden_cases()
    at = len(before) - len(original())                 # the added case comes first of the graded tiers
    assert after[at].name == added.name and len(after) == len(before) + 1    # every later case moved
    for case in after[at + 1:]:
        for old, new in zip(before[case.name], case_inputs(case)):
            if old is None:
                assert new is None
            elif isinstance(old, dict):
                assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)
            else:
                assert np.array_equal(old, new)
    export_suite(tmp_path, select="edge-added-*")
    manifest = export_suite(tmp_path, select="edge-zero-leak-g0-*")
    entries = {e["name"]: e for e in manifest["cases"]}
    assert set(entries) == {added.name, "edge-zero-leak-g0-none-expeuler-last-raw-K1"}
    name = "edge-zero-leak-g0-none-expeuler-last-raw-K1"
    assert (tmp_path / entries[name]["file"]).read_bytes() == (PACKAGED / CASES[name]["file"]).read_bytes()
    assert entries[name] == CASES[name]


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


def test_digits_of_agreement():
    assert digits_of_agreement(0.0) == DIGITS_CAP == digits_of_agreement(1e-20)
    assert digits_of_agreement(1e-12) == pytest.approx(12.0)
    assert digits_of_agreement(float("nan")) == 0.0 and digits_of_agreement(10.0) == pytest.approx(-1.0)


def test_comparison_reports_digits_per_array_case_and_tier(loaded):
    results = []
    for name in ("none-euler-last-positive-K1-static-V0", "edge-g0-none-euler-last-raw-K1"):
        case = loaded[name]
        y, grads = run_backend(case, "numpy")
        if name.startswith("edge"):
            y = y * (1 + 1e-9)
        results.append(compare(case, y, grads, case.entry["tolerance"]["cpu"]))
    ok, bad = results
    assert ok.status == "ok" and ok.tier == "basic" and set(ok.digits) == set(ok.errors)
    assert ok.min_digits == min(ok.digits.values()) > 13
    assert bad.failed and bad.tier == "edge" and bad.digits["y"] == pytest.approx(9.0, abs=0.1)
    assert digits_by_tier(results) == {"basic": ok.min_digits, "edge": bad.min_digits}
    table = format_table(results)
    assert f"{ok.min_digits:.1f}" in table.splitlines()[1]
    assert table.splitlines()[-1] == (f"fewest digits of agreement per tier: basic {ok.min_digits:.1f}, "
                                      f"edge {bad.min_digits:.1f}")


def test_verify_reports_a_wrong_backend_result(monkeypatch, loaded):
    case = loaded["none-euler-last-positive-K1-static-V0"]
    y, grads = run_backend(case, "numpy")
    grads["W"] = grads["W"] * (1 + 1e-9)
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
    summary = out.strip().splitlines()[-2]
    assert "0 mismatch, 0 error" in summary and not summary.startswith("0 ok")
    results = check_implementation(load_adapter(f"{EXAMPLE}:adapter"), tiers=("basic",))
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


def test_cli_selects_tiers(capsys):
    assert main(["golden", "verify", "--backend", "numpy", "--tiers", "edge,stiff"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line.split() for line in lines[2:-2]]
    assert {r[1] for r in rows} == {"edge", "stiff"}
    assert len(rows) == sum(e["tier"] in ("edge", "stiff") for e in MANIFEST["cases"])
    assert lines[-1].startswith("fewest digits of agreement per tier: stiff ")
    assert main(["golden", "check", "--impl", f"{EXAMPLE}:adapter", "--tiers", "basic",
                 "--cases", "none-*"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[2:-2]]
    assert rows and {r[1] for r in rows} == {"basic"}
    with pytest.raises(ValueError, match="tiers must be among"):
        load_suite(tiers=("basic", "hard"))


def test_cli_rejects_bad_arguments(capsys):
    assert main(["golden", "check", "--impl", "no_colon_here"]) == 2
    assert main(["golden", "check", "--impl", "not_a_module_xyz:adapter"]) == 2
    assert main(["golden", "verify", "--backend", "numpy", "--cases", "no-such-case*"]) == 2
    assert main(["golden", "verify", "--backend", "no-such-backend"]) == 2
    assert main(["golden", "verify", "--backend", "numpy", "--tiers", "basic,hard"]) == 2


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


def test_regenerating_the_packaged_suite_in_place_twice(tmp_path, monkeypatch):
    """A maintainer's second in-place export of the packaged suite (whose manifest no longer has the recorded
    digest after the first) regenerates it; every other reader still refuses that manifest."""
    from kinn_ref.analysis import golden_store
    folder = tmp_path / "golden"
    export_suite(folder, select="edge-zero-leak-*")
    monkeypatch.setitem(golden_store.PACKAGED_FOLDERS, "npz", folder)
    with pytest.raises(GoldenIntegrityError, match="differs from the one this kinn_ref release was built with"):
        golden_store.read_manifest(folder)
    manifest = export_suite(folder, select="edge-beta0-*")
    assert {e["name"] for e in manifest["cases"]} == {
        "edge-zero-leak-dense-rk4-cells-positive-K2", "edge-zero-leak-g0-none-expeuler-last-raw-K1",
        "edge-beta0-none-euler-cells-positive-K3", "edge-beta0-kirchhoff-implicit-derivatives-raw-K2"}
